"""The C engine's generator: a quantised model -> a C99 folder (kernel library, one arena, weights in
flash, Makefile, per-board linker scripts). See docs/engine.md."""
