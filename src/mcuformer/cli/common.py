"""Arguments shared by several verbs."""

from __future__ import annotations

import argparse

from mcuformer.space import Arch, SearchSpace


def add_space_argument(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--space", nargs="+", required=required, metavar="YAML",
                   help="search space: one mcuformer file, or the official supernet-T.yaml [+ supernet-T-new.yaml]")


def resolve_archs(specs: list[str], space: SearchSpace, num_classes: int) -> list[tuple[str, Arch]]:
    """Arch files, or the names 'largest', 'smallest', 'random:N[:seed]'."""
    import random
    out = []
    for spec in specs:
        if spec in ("largest", "smallest"):
            out.append((spec, getattr(space, spec)(num_classes)))
        elif spec.startswith("random:"):
            parts = spec.split(":")
            n, seed = int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
            rng = random.Random(seed)
            out += [(f"random{i}", space.sample(rng, num_classes)) for i in range(n)]
        else:
            out.append((spec, Arch.load(spec)))
    return out
