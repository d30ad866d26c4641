"""The memory profile figure: bytes live at each op through the network, against the budget.

Imported only for ``mcuformer memory --plot`` (matplotlib, Agg backend). The x axis is the position
in the network (stem, block 0, ..., head) so that the chosen schedule and the layer-wise one, which
have different op counts, line up.
"""

from __future__ import annotations

from pathlib import Path

from mcuformer.memory.boards import KIB
from mcuformer.memory.report import MemoryReport
from mcuformer.utils.io import atomic_write


def _positions(ops) -> list[float]:
    """Section index plus the op's fraction of its section (stem = 0, block i = i + 1, head last)."""
    keys = [op.name.split(".")[0] if not op.name.startswith("blocks.") else ".".join(op.name.split(".")[:2])
            for op in ops]
    order, counts = {}, {}
    for k in keys:
        order.setdefault(k, len(order))
        counts[k] = counts.get(k, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for k in keys:
        out.append(order[k] + seen.get(k, 0) / counts[k])
        seen[k] = seen.get(k, 0) + 1
    return out


def _steps(live) -> tuple[list[float], list[float]]:
    """Step-plot points in KB, the last op held until the end of its section."""
    x = _positions(live.ops)
    y = [b / KIB for b in live.live_bytes]
    return x + [int(x[-1]) + 1], y + [y[-1]]


def plot_profile(report: MemoryReport, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(11, 5.4))
    chosen = report.plan.liveness
    base = report.baseline.liveness
    for live, label, style in (
            (base, f"layer-wise, no technique (TFLM greedy arena {report.layerwise_baseline_bytes / KIB:.1f} KB)",
             dict(color="tab:gray", lw=1.0)),
            (chosen, f"{report.techniques.label()} (arena {report.peak_sram_bytes / KIB:.1f} KB)",
             dict(color="tab:blue", lw=1.4))):
        x, y = _steps(live)
        ax.step(x, y, where="post", label=label, **style)
    ax.fill_between(*_steps(chosen), step="post", color="tab:blue", alpha=0.25)
    x = _positions(chosen.ops)
    budget = report.board.arena_budget_bytes / KIB
    ax.axhline(budget, color="tab:red", ls="--", lw=1.2, label=f"{report.board.name} arena budget {budget:g} KB")
    ax.axhline(report.official_formula_bytes / KIB, color="tab:green", ls=":", lw=1.2,
               label=f"official formula {report.official_formula_bytes / KIB:.1f} KB")
    peak = chosen.peak_step
    ax.plot([x[peak]], [chosen.live_bytes[peak] / KIB], "o", color="tab:blue")
    ax.annotate(report.ops[peak].name, (x[peak], chosen.live_bytes[peak] / KIB), textcoords="offset points",
                xytext=(6, 6), fontsize=8)
    depth = report.arch.depth
    ticks = list(range(depth + 2))
    ax.set_xticks([t + 0.5 for t in ticks])
    ax.set_xticklabels(["stem"] + [str(i) for i in range(depth)] + ["head"], fontsize=8)
    ax.set_xlim(0, depth + 2)
    ax.set_ylim(0, None)
    ax.set_xlabel("position in the network (block)")
    ax.set_ylabel("live SRAM (KB)")
    ax.set_title(f"{report.arch.short()}  {report.arch.img_size} px", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=130), mode="wb")
    plt.close(fig)
    return path
