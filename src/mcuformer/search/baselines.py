"""The baselines that measure what the search gains: random search with the same number of
evaluations under the same budget, and the largest hand-scaled (uniform) subnet that fits."""

from __future__ import annotations

import itertools
import random

from mcuformer.search.evolution import Feasibility, draw_unique
from mcuformer.space import Arch, SearchSpace


def random_candidates(space: SearchSpace, num_classes: int, feasible: Feasibility, count: int, seed: int,
                      max_tries: int = 200) -> list[Arch]:
    """``count`` distinct random archs that fit (fewer when the feasible space is smaller)."""
    rng = random.Random(f"{seed}:random-search")
    return draw_unique(lambda: space.sample(rng, num_classes), count, set(), feasible, max_tries)


def uniform_archs(space: SearchSpace, num_classes: int) -> list[Arch]:
    """Every uniform subnet (one embed dim, depth, heads, MLP ratio, rank and patch for all layers),
    largest first: by embed dim, then depth, heads, MLP ratio, rank ratio, and tokens (smaller patch)."""
    base = space.smallest(num_classes).to_dict()
    patches = space.patch_size if base.get("stem", "patch") == "patch" else [base["patch_size"]]  # conv: no patch
    archs = [Arch.from_dict({**base, "embed_dim": e, "depth": d, "num_heads": h, "mlp_ratio": m, "rank_ratio": r,
                             "patch_size": p})
             for e, d, h, m, r, p in itertools.product(space.embed_dim, space.depth, space.num_heads,
                                                       space.mlp_ratio, space.rank_ratio, patches)]
    return sorted(archs, key=lambda a: (-a.embed_dim, -a.depth, -a.num_heads[0], -a.mlp_ratio[0], -a.rank_ratio,
                                        a.patch_size))


def hand_scaled(space: SearchSpace, num_classes: int, feasible: Feasibility) -> Arch | None:
    """The largest uniform subnet that passes the budget (no accuracy is used to choose it)."""
    return next((a for a in uniform_archs(space, num_classes) if feasible.measure(a)[2]), None)
