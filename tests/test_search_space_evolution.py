"""Search-space evolution with synthetic scores: the plane fit, the step's sign, the loop, the files; and the
CLI once on real data."""

import json

import numpy as np
import pytest

from mcuformer.errors import ConfigError
from mcuformer.search.space_evolution import (Grid, PointScore, evolve_space, fit_plane, initial_points, nearest,
                                              step)
from mcuformer.search.space_runner import run_space_evolution
from mcuformer.space import SearchSpace

from conftest import CONFIGS, run_cli

# the official code's grid: rank 0.4..0.95 by 0.05, patch 16..32 by 4 (240 px)
GRID = Grid(tuple(round(0.4 + 0.05 * i, 2) for i in range(12)), (16, 20, 24, 28, 32))


def synthetic(point):
    """A known tendency in normalised units: error falls with rank (-0.2) and rises with patch
    (+0.1); the infeasible fraction falls with patch (-0.6); combined slopes (-0.2, -0.5)."""
    x, y = GRID.normalise(point)
    return PointScore(point[0], point[1], accuracy=100 * (1 - (0.6 - 0.2 * x + 0.1 * y)), feasible=0.2 + 0.6 * y)


def test_plane_fit_recovers_a_known_tendency():
    rng = np.random.default_rng(0)
    xy = rng.random((7, 2))
    plane = fit_plane(xy, 0.3 + 1.5 * xy[:, 0] - 0.25 * xy[:, 1])
    assert plane.intercept == pytest.approx(0.3, abs=1e-12)
    assert plane.slope_rank == pytest.approx(1.5, abs=1e-12)
    assert plane.slope_patch == pytest.approx(-0.25, abs=1e-12)


def test_factors_are_normalised_to_the_grid_range():
    assert GRID.normalise((0.4, 16)) == (0.0, 0.0)
    assert GRID.normalise((0.95, 32)) == pytest.approx((1.0, 1.0))
    assert GRID.normalise((0.65, 24)) == pytest.approx((0.25 / 0.55, 0.5))
    # neighbours by normalised distance: one patch step (0.25) is nearer than five rank steps (0.45);
    # two points cannot span a plane, so a third joins them (but not the far fourth)
    pts = [synthetic(p) for p in [(0.4, 32), (0.65, 20), (0.9, 16), (0.65, 16)]]
    assert [s.point for s in nearest(GRID, (0.65, 16), pts, 2)] == [(0.65, 16), (0.65, 20), (0.9, 16)]


def test_step_goes_downhill_where_the_official_rule_goes_uphill():
    # the official worked example (multi_supernet.py): score in percent, legal fraction
    data = [(0.9, 16, 66.298, 0.384), (0.6, 16, 60.6, 0.666), (0.65, 28, 45.119, 1), (0.95, 28, 57.52, 1),
            (0.85, 20, 61.2, 1)]
    pts = [PointScore(r, p, a, f) for r, p, a, f in data]
    xy = np.array([GRID.normalise(s.point) for s in pts])
    err = fit_plane(xy, np.array([s.error for s in pts]))
    inf = fit_plane(xy, np.array([1 - s.feasible for s in pts]))
    assert err.slope_rank < 0 and inf.slope_patch < 0  # error falls with rank; illegal falls with patch
    nxt, g = step(GRID, (0.9, 16), err, inf, weight=1.0, tol=1e-3)
    assert nxt[0] > 0.9  # the official code steps to 0.8 (uphill on its own fitted error plane)
    plane_value = lambda p: err(*GRID.normalise(p)) + inf(*GRID.normalise(p))  # noqa: E731
    assert plane_value(nxt) < plane_value((0.9, 16))


def test_evolution_follows_the_synthetic_tendency_to_the_best_corner():
    evo = evolve_space(GRID, synthetic, [(0.5, 20), (0.6, 28), (0.8, 16)], rounds=15)
    for s in evo.steps:
        assert s["combined_slopes"] == pytest.approx([-0.2, -0.5], abs=1e-9)  # exact: the tendency is linear
        before, after = synthetic(tuple(s["from"])), synthetic(tuple(s["to"]))
        rank_only = synthetic((s["to"][0], s["from"][1]))
        assert rank_only.error <= before.error  # the rank step lowers the error
        assert after.feasible >= before.feasible  # the patch step raises the feasible fraction
        assert after.objective(1.0) < before.objective(1.0) or s["to"] == s["from"] == [0.95, 32]
    assert evo.best(1.0).point == (0.95, 32)
    assert evo.current == [(0.95, 32)]
    assert len({s.point for s in evo.visited}) == len(evo.visited)  # each point scored once


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="not on the grid"):
        evolve_space(GRID, synthetic, [(0.42, 16)], rounds=1)
    with pytest.raises(ConfigError, match="at least 3 neighbours"):
        evolve_space(GRID, synthetic, [(0.4, 16)], rounds=1, neighbours=2)
    assert len(initial_points(GRID, 5, seed=0)) == 5 and initial_points(GRID, 5, 0) == initial_points(GRID, 5, 0)


def test_run_writes_table_plot_space_and_resumes(tmp_path):
    space = SearchSpace.load([CONFIGS / "cifar10-tiny.yaml"])
    grid = Grid((0.25, 0.5, 0.75, 1.0), (4, 8))
    calls = []

    def fake(point):
        calls.append(point)
        x, y = grid.normalise(point)
        return PointScore(point[0], point[1], 40 + 10 * x - 5 * y, 0.5 + 0.5 * y)

    out = tmp_path / "evo"
    first = run_space_evolution(space, grid, fake, out, starts=[(0.25, 4), (0.5, 8), (1.0, 4)], rounds=1)
    with pytest.raises(ConfigError, match="--resume"):
        run_space_evolution(space, grid, fake, out, starts=[(0.25, 4)], rounds=2)
    n = len(calls)
    second = run_space_evolution(space, grid, fake, out, starts=[(0.25, 4), (0.5, 8), (1.0, 4)], rounds=4,
                                 resume=True)
    assert second["visited"][:len(first["visited"])] == first["visited"]
    assert (first["rounds_done"], second["rounds_done"]) == (1, 4) and len(calls) >= n
    assert len(calls) == len(set(calls))  # a resumed run never scores a point twice
    chosen = SearchSpace.load([out / "space.yaml"])
    assert (chosen.rank_ratio, chosen.patch_size) == ([1.0], [8])  # feasible gain 0.5 beats the 5-point error
    assert "| 1 | 8 |" in (out / "table.md").read_text()
    assert (out / "space_evolution.png").stat().st_size > 1000


def test_evolve_space_cli_trains_and_scores_a_real_point_quietly(tmp_path, cifar_archive):
    """`mcuformer evolve-space` end to end on real CIFAR-10 (a 2-step supernet at one grid point): the
    point is scored by real subnets, the chosen space is written, and --no-progress writes no bar."""
    out = tmp_path / "evo"
    proc = run_cli("evolve-space", "--space", CONFIGS / "cifar10-tiny.yaml", "--output", out,
                   "--data-path", cifar_archive, "--start", "0.5:4", "--rounds", "1", "--epochs", "1",
                   "--limit-train", "256", "--steps-per-epoch", "2", "--samples", "2", "--eval-limit", "20",
                   "--workers", "0", "--device", "cpu", "--no-progress", check=True)
    assert "chosen: rank ratio 0.5, patch 4" in proc.stdout
    assert "|" not in proc.stderr and "it/s" not in proc.stderr  # no progress bar
    visited = json.loads((out / "result.json").read_text())["visited"]
    assert [(v["rank_ratio"], v["patch_size"]) for v in visited] == [(0.5, 4)]
    assert visited[0]["extra"]["subnets"] == 2 and visited[0]["extra"]["eval_images"] == 20
    assert 0 <= visited[0]["accuracy"] <= 100 and visited[0]["feasible"] == 1.0
    chosen = SearchSpace.load(out / "space.yaml")
    assert chosen.rank_ratio == [0.5] and chosen.patch_size == [4]
