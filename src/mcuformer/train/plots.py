"""The training-curves figure (loss, and top-1 of the evaluated subnets per epoch)."""

from __future__ import annotations

from pathlib import Path

from mcuformer.utils.io import atomic_write


def plot_training_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [h for h in history if "train_loss" in h]  # a fine-tuning run also logs epoch 0 (before)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot([h["epoch"] for h in trained], [h["train_loss"] for h in trained], color="tab:blue")
    ax1.set(xlabel="epoch", ylabel="train loss (soft-target CE)", title="training loss")
    ax1.grid(alpha=0.3)
    colors = {"largest": "tab:red", "smallest": "tab:green", "subnet": "tab:purple"}
    names = dict.fromkeys(k for h in history for k in h.get("eval", {}))
    for key in names:
        pts = [(h["epoch"], h["eval"][key]["top1"]) for h in history if key in h.get("eval", {})]
        ax2.plot(*zip(*pts), marker="o", ms=3, color=colors.get(key), label=f"{key} subnet")
    ax2.set(xlabel="epoch", ylabel="top-1 (%)", title="validation top-1")
    ax2.grid(alpha=0.3)
    if names:  # no evaluation yet: nothing to label
        ax2.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)
