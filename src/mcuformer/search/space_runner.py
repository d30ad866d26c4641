"""``run_space_evolution``: `mcuformer evolve-space`, with the real per-point scorer (a short
supernet trained per grid point; its sampled subnets' accuracy; the fraction that fits)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from mcuformer.search.budget import Budget
from mcuformer.search.plots import plot_space_evolution
from mcuformer.search.space_evolution import Grid, Point, PointScore, SpaceEvolution, evolve_space
from mcuformer.space import SearchSpace
from mcuformer.errors import ConfigError
from mcuformer.utils.io import read_structured, write_json, write_text


class SupernetPointScorer:
    """Train a short supernet of the space at (r, p), then score it as S3's E-T error does: accuracy =
    mean of the average and the best top-1 of ``samples`` random subnets (on ``eval_limit`` test
    images); feasible = the fraction of ``legal_samples`` random subnets that meet the budget."""

    def __init__(self, space: SearchSpace, budget: Budget, output: Path, train_cfg, data_path=None,
                 samples: int = 20, legal_samples: int = 500, eval_limit: int = 1000, seed: int = 0,
                 progress: bool = True):
        self.space, self.budget, self.output, self.cfg = space, budget, Path(output), train_cfg
        self.data_path, self.samples, self.legal_samples = data_path, samples, legal_samples
        self.eval_limit, self.seed, self.progress = eval_limit, seed, progress

    def __call__(self, point: Point) -> PointScore:
        from mcuformer.train.evaluate import evaluate_checkpoint
        from mcuformer.train import train_supernet

        r, p = point
        sub = self.space.with_factors(r, p)
        run = self.output / f"r{r:g}-p{p}"
        if not (run / "summary.json").exists():  # a finished point is not trained again on resume
            train_supernet(sub, run, self.cfg, self.data_path, resume=(run / "checkpoint.pt").exists(),
                           progress=self.progress)
        n = self.space.num_classes or 10
        rng = random.Random(f"{self.seed}:{r}:{p}")
        archs = [sub.sample(rng, n) for _ in range(self.samples)]
        rows = evaluate_checkpoint(run / "checkpoint.pt", archs, data_path=self.data_path, split="val",
                                   limit=self.eval_limit, workers=self.cfg.workers, device=self.cfg.device,
                                   progress=False)
        accs = [row["top1"] for row in rows]
        legal = [sub.sample(rng, n) for _ in range(self.legal_samples)]
        feasible = sum(self.budget.fits(a) for a in legal) / len(legal)
        return PointScore(r, p, (sum(accs) / len(accs) + max(accs)) / 2, feasible,
                          {"mean_top1": sum(accs) / len(accs), "max_top1": max(accs), "subnets": len(accs),
                           "eval_images": rows[0]["count"], "run": str(run)})


def run_space_evolution(space: SearchSpace, grid: Grid, score, output, *, starts: list[Point], rounds: int,
                        weight: float = 1.0, neighbours: int = 5, resume: bool = False) -> dict:
    """Evolve, writing state, table, plot and the chosen space YAML into ``output``."""
    output = Path(output)
    state_path = output / "space_state.json"
    state = None
    if state_path.exists():
        if not resume:
            raise ConfigError(f"{output} already holds a space evolution; pass --resume or choose another --output")
        state = SpaceEvolution.from_dict(read_structured(state_path))
    evo = evolve_space(grid, score, starts, rounds, weight=weight, neighbours=neighbours, state=state,
                       on_round=lambda st: write_json(state_path, st.to_dict()))
    best = evo.best(weight)
    chosen = replace(space.with_factors(best.rank_ratio, best.patch_size),
                     name=f"{space.name}-evolved-r{best.rank_ratio:g}-p{best.patch_size}")
    chosen.save(output / "space.yaml")
    write_text(output / "table.md", format_table(evo, weight))
    plot_space_evolution(evo, grid, weight, output / "space_evolution.png")
    result = {"grid": {"rank_ratio": list(grid.rank_ratio), "patch_size": list(grid.patch_size)},
              "weight": weight, "rounds": rounds, **evo.to_dict(),
              "chosen": {"rank_ratio": best.rank_ratio, "patch_size": best.patch_size,
                         "objective": best.objective(weight), "space": str(output / "space.yaml")}}
    write_json(output / "result.json", result)
    return result


def format_table(evo: SpaceEvolution, weight: float) -> str:
    lines = ["| rank ratio | patch | accuracy (%) | fits (%) | objective |", "|---:|---:|---:|---:|---:|"]
    for v in sorted(evo.visited, key=lambda v: v.objective(weight)):
        lines.append(f"| {v.rank_ratio:g} | {v.patch_size} | {v.accuracy:.2f} | {100 * v.feasible:.1f} | "
                     f"{v.objective(weight):.4f} |")
    lines += ["", "| round | from | to | combined slopes (rank, patch) |", "|---:|---|---|---|"]
    for s in evo.steps:
        lines.append(f"| {s['round']} | {tuple(s['from'])} | {tuple(s['to'])} | "
                     f"({s['combined_slopes'][0]:+.4f}, {s['combined_slopes'][1]:+.4f}) |")
    return "\n".join(lines) + "\n"
