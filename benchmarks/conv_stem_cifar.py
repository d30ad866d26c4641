"""Conv stem against patch stem on CIFAR-10, equal recipe and equal images, on the CPU: two subnets of
configs/cifar10-conv.yaml with the same transformer (E128, depth 6, 4 heads, MLP ratio 2, rank ratio
0.5, 64 tokens) and about the same int8 flash (both under 1 MB; memory model figures), one with the
patch-4 stem and one with the conv stem (conv 32 + max-pool, conv 128 + max-pool), each trained from
scratch as a standalone ViT on the same images in the same order (seeded shuffle, random crop with
4-px padding and horizontal flip, seeded), AdamW lr 1e-3 (linear warm-up over 5% of the steps, then
cosine), weight decay 0.05, batch 64, label smoothing 0.1, float32, then float top-1 on the test
split (an evenly spread subset, --eval-images).

A short schedule (default 1 epoch, 50 000 images) on one CPU thread: a comparison of learning speed
per image seen, not of final accuracy.

    python benchmarks/conv_stem_cifar.py                  # the two models side by side, 1 thread each
    python benchmarks/conv_stem_cifar.py --images 10000 --eval-images 2000
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.data import default_data_path  # noqa: E402
from mcuformer.data.archive import load_archive_split  # noqa: E402
from mcuformer.data.datasets import spread  # noqa: E402
from mcuformer.data.transforms import CIFAR_MEAN, CIFAR_STD  # noqa: E402
from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import estimate  # noqa: E402
from mcuformer.space import Arch, SearchSpace  # noqa: E402
from mcuformer.supernet import ViT  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402

TRANSFORMER = dict(img_size=32, rank_ratio=0.5, embed_dim=128, depth=6, num_heads=(4,) * 6, mlp_ratio=(2.0,) * 6,
                   num_classes=10, head_dim=32, cls_token=False, pool="gap")
ARCHS = {
    "patch4": Arch(patch_size=4, **TRANSFORMER),
    "conv32P-128P": Arch(patch_size=1, stem="conv", stem_layers=2, stem_width=32, stem_pool=(True, True),
                         **TRANSFORMER),
}


def normalise(batch_uint8: torch.Tensor) -> torch.Tensor:
    x = batch_uint8.permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (4 px zero padding after normalisation) and horizontal flip, per image."""
    b = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (b,), generator=gen), torch.randint(0, 9, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    out = torch.stack([padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32] for i in range(b)])
    out[flip] = out[flip].flip(-1)
    return out


def train(arch: Arch, images: np.ndarray, targets: np.ndarray, order: np.ndarray, batch: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = ViT(arch)
    for m in model.modules():  # timm-like init of the linears; convs keep PyTorch's
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    torch.nn.init.trunc_normal_(model.pos_embed, std=0.02)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos_embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3)
    steps = len(order) // batch
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0, losses = time.time(), []
    for s in range(steps):
        idx = order[s * batch:(s + 1) * batch]
        x = augment(normalise(torch.from_numpy(images[idx])), gen)
        y = torch.from_numpy(targets[idx]).long()
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return {"model": model, "train_seconds": time.time() - t0, "steps": steps,
            "final_loss_mean_last_50": float(np.mean(losses[-50:]))}


@torch.no_grad()
def evaluate(model, images: np.ndarray, targets: np.ndarray) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), 250):
        x = normalise(torch.from_numpy(images[i:i + 250]))
        correct += (model(x).argmax(1).numpy() == targets[i:i + 250]).sum()
    return 100.0 * correct / len(images)


def run_one(task) -> dict:
    name, job = task
    torch.set_num_threads(job["threads"])
    arch = ARCHS[name]
    run = train(arch, job["images"], job["targets"], job["order"], job["batch"], job["seed"])
    top1 = evaluate(run["model"], job["val_x"], job["val_y"])
    return {"stem": name, "arch": arch.short(), "params": arch.num_params(),
            "int8_flash_bytes": estimate(arch).flash_bytes, "top1": round(float(top1), 2),
            "train_seconds": round(run["train_seconds"], 1), "steps": run["steps"],
            "final_loss_mean_last_50": round(run["final_loss_mean_last_50"], 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50000, help="training images seen by each model (default 50000)")
    ap.add_argument("--eval-images", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None)
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/conv_stem_cifar.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.load(ROOT / "configs/cifar10-conv.yaml")
    data = Path(args.data) if args.data else default_data_path()
    train_x, train_y, _ = load_archive_split(data, "train")
    val_x, val_y, _ = load_archive_split(data, "val")
    keep = spread(len(val_y), args.eval_images)
    val_x, val_y = val_x[keep], np.asarray(val_y)[keep]
    rng = np.random.default_rng(args.seed)
    order = np.concatenate([rng.permutation(len(train_y)) for _ in range(-(-args.images // len(train_y)))])
    order = order[:args.images]
    print(f"{args.images} training images each (batch {args.batch}, {args.threads} thread(s) per model, the "
          f"models side by side); top-1 on {len(val_y)} test images")
    for arch in ARCHS.values():
        space.check(arch)
    job = dict(images=train_x, targets=np.asarray(train_y), order=order, batch=args.batch, seed=args.seed,
               val_x=val_x, val_y=val_y, threads=args.threads)
    with ProcessPoolExecutor(len(ARCHS), mp_context=multiprocessing.get_context("fork")) as pool:
        rows = list(pool.map(run_one, [(name, job) for name in ARCHS]))
    print(f"{'stem':<14} {'arch':<44} {'params':>8} {'int8 flash':>11} {'top-1':>7} {'train s':>8}")
    for r in rows:
        print(f"{r['stem']:<14} {r['arch']:<44} {r['params']:>8,} {r['int8_flash_bytes'] / 1024:>9.1f} KB "
              f"{r['top1']:>6.2f}% {r['train_seconds']:>8.0f}")
    write_json(args.output, {"recipe": __doc__.split("\n\n")[0], "images_per_model": args.images,
                             "batch": args.batch, "threads": args.threads, "seed": args.seed,
                             "eval_images": len(val_y), "torch": torch.__version__, "host": platform.machine(),
                             "rows": rows})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
