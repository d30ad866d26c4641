"""Search-space evolution over (rank ratio, patch size), done right.

Each visited grid point (a supernet of that rank ratio and patch size) gets two figures: the error
of its subnets (a fraction, 1 - accuracy/100) and the fraction of its subnets that do not fit the
budget. Around each current point we fit a least-squares plane to each figure over its nearest
visited points, with both factors normalised to [0, 1] over their grid range (so that neither unit
dominates, unlike the official code's raw (r, p) distances and its percent/fraction mix), and
step one grid position *down* the combined slope (the official rule can step uphill). Repeat.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from mcuformer.errors import ConfigError

Point = tuple[float, int]  # (rank ratio, patch size)


@dataclass(frozen=True)
class Grid:
    rank_ratio: tuple[float, ...]
    patch_size: tuple[int, ...]

    def __post_init__(self):
        r, p = sorted({float(x) for x in self.rank_ratio}), sorted({int(x) for x in self.patch_size})
        if not r or not p:
            raise ConfigError("the evolution grid needs at least one rank ratio and one patch size")
        object.__setattr__(self, "rank_ratio", tuple(r))
        object.__setattr__(self, "patch_size", tuple(p))

    def check(self, point: Point) -> None:
        if point[0] not in self.rank_ratio or point[1] not in self.patch_size:
            raise ConfigError(f"point (rank {point[0]:g}, patch {point[1]}) is not on the grid "
                              f"{list(self.rank_ratio)} x {list(self.patch_size)}")

    def normalise(self, point: Point) -> tuple[float, float]:
        """Both factors on [0, 1] over the grid's range (0 where a factor has one value)."""
        def unit(v, values):
            lo, hi = values[0], values[-1]
            return 0.0 if hi == lo else (v - lo) / (hi - lo)
        return unit(point[0], self.rank_ratio), unit(point[1], self.patch_size)

    def move(self, point: Point, dr: int, dp: int) -> Point:
        """Shift by grid positions, clipped at the bounds."""
        i = min(max(self.rank_ratio.index(point[0]) + dr, 0), len(self.rank_ratio) - 1)
        j = min(max(self.patch_size.index(point[1]) + dp, 0), len(self.patch_size) - 1)
        return self.rank_ratio[i], self.patch_size[j]


@dataclass
class PointScore:
    """``accuracy`` in percent; ``feasible`` the fraction of sampled subnets that fit the budget."""

    rank_ratio: float
    patch_size: int
    accuracy: float
    feasible: float
    extra: dict = field(default_factory=dict)

    @property
    def point(self) -> Point:
        return self.rank_ratio, self.patch_size

    @property
    def error(self) -> float:
        return 1.0 - self.accuracy / 100.0

    def objective(self, weight: float) -> float:
        """Lower is better: error + weight x infeasible fraction (both fractions)."""
        return self.error + weight * (1.0 - self.feasible)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Plane:
    intercept: float
    slope_rank: float   # per unit of normalised rank ratio
    slope_patch: float  # per unit of normalised patch size

    def __call__(self, x: float, y: float) -> float:
        return self.intercept + self.slope_rank * x + self.slope_patch * y


def fit_plane(xy: np.ndarray, values: np.ndarray) -> Plane:
    """Least squares ``v = c0 + cr x + cp y``. A factor that does not vary among the points has no
    measurable slope: it gets 0 (no step along it) rather than a minimum-norm guess."""
    xy = np.asarray(xy, float)
    varies = [bool(np.ptp(xy[:, j]) > 1e-12) for j in range(2)]
    a = np.column_stack([np.ones(len(xy))] + [xy[:, j] for j in range(2) if varies[j]])
    c = list(np.linalg.lstsq(a, np.asarray(values, float), rcond=None)[0])
    slopes = [float(c.pop(1)) if v else 0.0 for v in varies]
    return Plane(float(c[0]), *slopes)


def spans_plane(xy: np.ndarray) -> bool:
    return np.linalg.matrix_rank(np.column_stack([np.ones(len(xy)), xy]), tol=1e-9) == 3


def nearest(grid: Grid, point: Point, visited: list[PointScore], k: int) -> list[PointScore]:
    """The k visited points nearest to ``point`` in normalised units (ties: visit order), and more
    of the next nearest while they lie on one line (a plane needs points that span it)."""
    x0, y0 = grid.normalise(point)
    def dist(s):
        x, y = grid.normalise(s.point)
        return math.hypot(x - x0, y - y0)
    ranked = sorted(visited, key=dist)
    n = min(k, len(ranked))
    while n < len(ranked) and not spans_plane(np.array([grid.normalise(s.point) for s in ranked[:n]])):
        n += 1
    return ranked[:n]


def step(grid: Grid, point: Point, err: Plane, infeasible: Plane, weight: float, tol: float) -> tuple[Point, tuple]:
    """One grid position against the sign of each slope of error + weight x infeasible."""
    g = (err.slope_rank + weight * infeasible.slope_rank, err.slope_patch + weight * infeasible.slope_patch)
    d = tuple(0 if abs(s) <= tol else (-1 if s > 0 else 1) for s in g)
    return grid.move(point, *d), g


@dataclass
class SpaceEvolution:
    visited: list[PointScore] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)   # one row per (round, current point)
    current: list[Point] = field(default_factory=list)
    rounds_done: int = 0

    def score_of(self, point: Point) -> PointScore | None:
        return next((s for s in self.visited if s.point == point), None)

    def best(self, weight: float) -> PointScore:
        return min(self.visited, key=lambda s: s.objective(weight))

    def to_dict(self) -> dict:
        return {"visited": [s.to_dict() for s in self.visited], "steps": self.steps,
                "current": [list(p) for p in self.current], "rounds_done": self.rounds_done}

    @classmethod
    def from_dict(cls, d: dict) -> "SpaceEvolution":
        return cls([PointScore(**s) for s in d["visited"]], list(d["steps"]),
                   [(float(r), int(p)) for r, p in d["current"]], int(d["rounds_done"]))


def initial_points(grid: Grid, count: int, seed: int) -> list[Point]:
    """``count`` distinct grid points, seeded (the official code samples 5 of its grid)."""
    all_points = [(r, p) for r in grid.rank_ratio for p in grid.patch_size]
    return random.Random(seed).sample(all_points, min(count, len(all_points)))


def evolve_space(grid: Grid, score: Callable[[Point], PointScore], starts: list[Point], rounds: int, *,
                 weight: float = 1.0, neighbours: int = 5, tol: float = 1e-3,
                 state: SpaceEvolution | None = None,
                 on_round: Callable[[SpaceEvolution], None] | None = None) -> SpaceEvolution:
    """Score the start points, then ``rounds`` times: fit the planes around each current point and
    step; new points are scored (each at most once). ``on_round`` persists the state."""
    if neighbours < 3:
        raise ConfigError(f"a plane needs at least 3 neighbours, got {neighbours}")
    for p in starts:
        grid.check(p)
    if state is None:
        state = SpaceEvolution(current=list(dict.fromkeys(starts)))
        for p in state.current:
            state.visited.append(score(p))
        if on_round:
            on_round(state)
    while state.rounds_done < rounds:
        moved = []
        for p in state.current:
            near = nearest(grid, p, state.visited, neighbours)
            xy = np.array([grid.normalise(s.point) for s in near])
            err = fit_plane(xy, np.array([s.error for s in near]))
            inf = fit_plane(xy, np.array([1.0 - s.feasible for s in near]))
            nxt, g = step(grid, p, err, inf, weight, tol)
            state.steps.append({"round": state.rounds_done + 1, "from": list(p), "to": list(nxt),
                                "error_slopes": [err.slope_rank, err.slope_patch],
                                "infeasible_slopes": [inf.slope_rank, inf.slope_patch],
                                "combined_slopes": list(g), "neighbours": len(near)})
            moved.append(nxt)
        state.current = list(dict.fromkeys(moved))
        for p in state.current:
            if state.score_of(p) is None:
                state.visited.append(score(p))
        state.rounds_done += 1
        if on_round:
            on_round(state)
    return state
