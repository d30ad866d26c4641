"""Arch specs as the verbs take them: an Arch, an arch file, 'largest', 'smallest' or 'random:N[:seed]'.
Here, in the first stage, so that every later stage can resolve them without importing the API."""

from __future__ import annotations

import random

from mcuformer.errors import ConfigError
from mcuformer.space.arch import Arch
from mcuformer.space.search_space import SearchSpace

MAX_RANDOM_ARCHS = 10000


def resolve_archs(specs: list, space: SearchSpace, num_classes: int) -> list[tuple[str, Arch]]:
    """(name, Arch) for each spec: an Arch, an arch file, or 'largest', 'smallest', 'random:N[:seed]'."""
    out = []
    for spec in specs:
        if isinstance(spec, Arch):
            out.append((spec.short(), spec))
        elif spec in ("largest", "smallest"):
            out.append((spec, getattr(space, spec)(num_classes)))
        elif isinstance(spec, str) and spec.startswith("random:"):
            parts = spec.split(":")
            try:
                n, seed = int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
            except (ValueError, IndexError):
                raise ConfigError(f"bad arch spec {spec!r}: use random:N or random:N:SEED") from None
            if not 1 <= n <= MAX_RANDOM_ARCHS or seed < 0 or len(parts) > 3:
                raise ConfigError(f"bad arch spec {spec!r}: N in [1, {MAX_RANDOM_ARCHS}], SEED >= 0")
            rng = random.Random(seed)
            out += [(f"random{i}", space.sample(rng, num_classes)) for i in range(n)]
        else:
            out.append((str(spec), Arch.load(spec)))
    return out
