"""PNG figures of a search: the accuracy-SRAM Pareto front with the budget, fitness per generation."""

from __future__ import annotations

from pathlib import Path

from mcuformer.utils.io import atomic_write

KIB = 1024


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(sram, accuracy) points no other point beats on both (less SRAM and more accuracy)."""
    front, best = [], float("-inf")
    for sram, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((sram, acc))
            best = acc
    return front


def plot_pareto(evaluated, sram_budget: int, path: Path, title: str, marks: dict | None = None,
                ylabel: str = "held-out top-1 (%)") -> None:
    """``evaluated``: objects with .sram and .fitness; ``marks``: label -> (sram, accuracy)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [s.sram / KIB for s in evaluated]
    ax.scatter(xs, [s.fitness for s in evaluated], s=10, alpha=0.45, label="evaluated subnets")
    front = pareto_front([(s.sram / KIB, s.fitness) for s in evaluated])
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="C1", label="Pareto front")
    for i, (label, (sram, acc)) in enumerate((marks or {}).items()):
        ax.scatter([sram / KIB], [acc], marker="*", s=140, color=f"C{i + 3}", label=label, zorder=3)
    budget_kb = sram_budget / KIB
    if budget_kb <= 1.5 * max(xs + [1]):
        ax.axvline(budget_kb, color="red", ls="--", label=f"SRAM budget {budget_kb:g} KB")
    else:
        ax.text(0.98, 0.02, f"SRAM budget {budget_kb:g} KB (off the chart)", transform=ax.transAxes,
                ha="right", va="bottom", color="red")
    ax.set_xlabel("peak SRAM (KB, memory model)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), mode="wb")
    plt.close(fig)


def plot_fitness(history: list[dict], path: Path, random_best: float | None = None,
                 ylabel: str = "held-out top-1 (%)") -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    gens = [h["generation"] for h in history]
    ax.plot(gens, [h["best_fitness"] for h in history], marker="o", label="best")
    ax.plot(gens, [h["topk_mean_fitness"] for h in history], marker=".", label="top-k mean")
    ax.plot(gens, [h["population_mean_fitness"] for h in history], ls=":", label="population mean")
    if random_best is not None:
        ax.axhline(random_best, color="grey", ls="--", label="random search best")
    ax.set_xlabel("generation")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), mode="wb")
    plt.close(fig)


def plot_space_evolution(evo, grid, weight: float, path: Path) -> None:
    """Visited (rank ratio, patch size) points coloured by objective, with the steps taken."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for s in evo.steps:
        if s["from"] != s["to"]:
            ax.annotate("", xy=s["to"], xytext=s["from"], arrowprops={"arrowstyle": "->", "color": "grey"})
    xs, ys = [v.rank_ratio for v in evo.visited], [v.patch_size for v in evo.visited]
    sc = ax.scatter(xs, ys, c=[v.objective(weight) for v in evo.visited], cmap="viridis_r", s=90, zorder=3)
    for v in evo.visited:
        ax.annotate(f"{v.accuracy:.1f}% / {100 * v.feasible:.0f}% fit", (v.rank_ratio, v.patch_size),
                    textcoords="offset points", xytext=(6, 6), fontsize=7)
    best = evo.best(weight)
    ax.scatter([best.rank_ratio], [best.patch_size], marker="*", s=260, color="red", zorder=4, label="chosen")
    fig.colorbar(sc, ax=ax, label=f"error + {weight:g} x infeasible (lower is better)")
    ax.set_xticks(list(grid.rank_ratio))
    ax.set_yticks(list(grid.patch_size))
    ax.set_xlabel("rank ratio")
    ax.set_ylabel("patch size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), mode="wb")
    plt.close(fig)
