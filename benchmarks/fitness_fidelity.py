"""How well does the search's fitness predict test accuracy? Random subnets that fit a board are scored
by the proxies a search could use on the held-out split (the 500 training images the zoo supernet never
saw): top-1 (what `mcuformer search` uses), mean log-likelihood of the true class, and mean probability
of the true class. Each proxy is compared with the truth, float top-1 on the full 10k test split:
rank correlation, and the regret of picking the proxy's best (truth of the best subnet minus truth of
the pick), over all of them (30, as many as a budget-curve search evaluates) and over random groups of 10.

    python benchmarks/fitness_fidelity.py   # ~20 min on 2 cores; writes benchmarks/results/fitness_fidelity.json
                                            # and docs/fitness_fidelity.png
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import ConfigError, run_script  # noqa: E402
from mcuformer.utils.io import file_sha256, write_json  # noqa: E402

PROXIES = {"heldout_top1": "held-out top-1", "heldout_loglik": "held-out log-likelihood",
           "heldout_prob": "held-out p(true class)"}


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        r[tie] = r[tie].mean()
    return r


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(np.asarray(a, float)), ranks(np.asarray(b, float)))[0, 1])


def kendall_tau_b(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    da, db = np.sign(a[:, None] - a[None, :]), np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), 1)
    da, db = da[iu], db[iu]
    denom = np.sqrt(np.count_nonzero(da) * np.count_nonzero(db))
    return float((da * db).sum() / denom) if denom else float("nan")


def regret(proxy: np.ndarray, truth: np.ndarray, idx: np.ndarray, flash: np.ndarray) -> float:
    """Truth of the best candidate in ``idx`` minus truth of the proxy's pick; ties go to more flash, as
    the search's ranking breaks them."""
    pick = max(idx, key=lambda i: (proxy[i], flash[i]))
    return float(truth[idx].max() - truth[pick])


def per_image(model, archs, batches, amp_ctx):
    """For each arch: per-image correct (bool) and log p(true class), over the preloaded batches."""
    import torch
    correct, loglik = [], []
    with torch.no_grad():
        for arch in archs:
            model.set_active_subnet(arch)
            c, ll = [], []
            for x, y in batches:
                with amp_ctx():
                    logits = model(x).float()
                lp = torch.log_softmax(logits, dim=1)
                c.append((logits.argmax(1) == y).numpy())
                ll.append(lp.gather(1, y[:, None])[:, 0].numpy())
            correct.append(np.concatenate(c))
            loglik.append(np.concatenate(ll).astype(np.float64))
    return np.stack(correct), np.stack(loglik)


def plot(rows: list[dict], path: Path, heldout_images: int, test_images: int, board: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mcuformer.utils.io import atomic_write
    truth = [r["test_top1"] for r in rows]
    flash = [r["flash_bytes"] / 1024 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, key in zip(axes, ("heldout_top1", "heldout_loglik")):
        points = ax.scatter([r[key] for r in rows], truth, c=flash, cmap="viridis", s=22)
        ax.set(xlabel=f"{PROXIES[key]} ({heldout_images:,} images)", ylabel=f"test top-1 ({test_images:,} images, %)")
        ax.grid(alpha=0.3)
    fig.colorbar(points, ax=axes, label="flash (KB, int8)")
    fig.suptitle(f"Search fitness against test accuracy: random subnets that fit the {board}")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-zoo/supernet.pt"))
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--subnets", type=int, default=30)
    ap.add_argument("--group", type=int, default=10, help="candidates per simulated search")
    ap.add_argument("--test-limit", type=int, default=0, help="test images (0: all 10k)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/fitness_fidelity.json"))
    ap.add_argument("--plot", default=str(ROOT / "docs/fitness_fidelity.png"))
    args = ap.parse_args()
    if args.subnets < 3 or not 2 <= args.group <= args.subnets or args.test_limit < 0:
        ap.error("need --subnets >= 3, 2 <= --group <= --subnets and --test-limit >= 0")
    from tqdm import tqdm

    from mcuformer.train.checkpoint import recorded_split
    from mcuformer.search.baselines import random_candidates
    from mcuformer.search.evolution import Feasibility
    from mcuformer.search.fitness import heldout_dataset, load_supernet, preload, resolve_search_data, test_dataset
    from mcuformer.search.runner import make_budget
    from mcuformer.train import load_checkpoint
    from mcuformer.train.distributed import init_distributed
    from mcuformer.train.evaluate import autocast_for

    t_start = time.time()
    ckpt = Path(args.checkpoint)
    info = init_distributed("cpu")
    net = load_supernet(ckpt, info)
    data = resolve_search_data(net, None)
    split = recorded_split(ckpt, load_checkpoint(ckpt))
    heldout, _ = heldout_dataset(net, data, split)
    test = test_dataset(net, data, args.test_limit)
    budget = make_budget(args.board)
    feasible = Feasibility(budget)
    archs = random_candidates(net.space, net.num_classes, feasible, args.subnets, args.seed)
    if len(archs) < max(3, args.group):
        raise ConfigError(f"only {len(archs)} distinct subnets of the space fit the {args.board}; "
                          f"need at least {max(3, args.group)}")
    h_batches, t_batches = preload(heldout, info, 500, 1), preload(test, info, 500, 1)
    amp = lambda: autocast_for(info.device, "auto")  # noqa: E731
    rows = []
    h_corr, h_ll, t_corr = [], [], []
    for arch in tqdm(archs, desc="subnets", unit="subnet"):
        hc, hl = per_image(net.model, [arch], h_batches, amp)
        tc, _ = per_image(net.model, [arch], t_batches, amp)
        h_corr.append(hc[0]), h_ll.append(hl[0]), t_corr.append(tc[0])
        sram, flash, _ = feasible.measure(arch)
        rows.append({"summary": arch.short(), "arch": arch.to_dict(), "sram_bytes": sram, "flash_bytes": flash,
                     "heldout_top1": round(100 * float(hc[0].mean()), 4),
                     "heldout_loglik": round(float(hl[0].mean()), 5),
                     "heldout_prob": round(100 * float(np.exp(hl[0]).mean()), 4),
                     "test_top1": round(100 * float(tc[0].mean()), 4)})
    truth = np.array([r["test_top1"] for r in rows])
    t_corr = np.stack(t_corr)
    half = np.arange(t_corr.shape[1]) % 2 == 0  # two halves of the test split: a fitness set of that size
    truth_other = 100 * t_corr[:, ~half].mean(1)
    rng = random.Random(args.seed)
    groups = [np.array(rng.sample(range(len(rows)), min(args.group, len(rows)))) for _ in range(2000)]
    candidates = {k: np.array([r[k] for r in rows]) for k in PROXIES}
    candidates["test_half"] = 100 * t_corr[:, half].mean(1)
    flash = np.array([r["flash_bytes"] for r in rows], float)
    candidates["flash"] = flash
    stats = {}
    for key, proxy in candidates.items():
        target = truth_other if key == "test_half" else truth
        stats[key] = {"spearman": round(spearman(proxy, target), 3),
                      "kendall_tau_b": round(kendall_tau_b(proxy, target), 3),
                      "regret_all": round(regret(proxy, target, np.arange(len(rows)), flash), 3),
                      "regret_group_mean": round(float(np.mean([regret(proxy, target, g, flash) for g in groups])), 3)}
    random_pick = {"all": round(float(truth.max() - truth.mean()), 3),
                   "group_mean": round(float(np.mean([truth[g].max() - truth[g].mean() for g in groups])), 3)}
    names = dict(PROXIES, test_half="test top-1 on one half, checked on the other (ceiling)",
                 flash="flash used (bigger is better)")
    print(f"\n{len(rows)} random subnets that fit {args.board}; truth: float top-1 on {t_corr.shape[1]:,} test "
          f"images, from {truth.min():.2f} to {truth.max():.2f} %")
    print(f"| proxy | Spearman | Kendall tau-b | regret of its pick (all) | mean regret, groups of {args.group} |")
    print("|---|---|---|---|---|")
    for key, s in stats.items():
        print(f"| {names[key]} | {s['spearman']:.3f} | {s['kendall_tau_b']:.3f} | {s['regret_all']:.2f} pt | "
              f"{s['regret_group_mean']:.2f} pt |")
    print(f"| a random pick (expected) | | | {random_pick['all']:.2f} pt | {random_pick['group_mean']:.2f} pt |")
    where = ckpt.resolve()
    write_json(args.output, {"supernet": str(where.relative_to(ROOT)) if ROOT in where.parents else ckpt.name,
                             "supernet_sha256": file_sha256(ckpt), "board": args.board,
                             "heldout_images": int(h_corr[0].size), "test_images": int(t_corr.shape[1]),
                             "group": args.group, "stats": stats, "random_pick_regret": random_pick,
                             "rows": rows, "seconds": round(time.time() - t_start),
                             "command": "python benchmarks/fitness_fidelity.py " + " ".join(sys.argv[1:])})
    plot(rows, Path(args.plot), int(h_corr[0].size), int(t_corr.shape[1]), args.board)
    print(f"wrote {args.output} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
