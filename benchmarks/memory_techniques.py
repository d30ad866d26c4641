"""The memory model's "must show" table: peak SRAM of four subnets with no technique, each technique
alone, all of them; the lower bound; the layer-wise baseline (TFLM greedy); the official formula;
flash. Every peak is a planned arena (checked against the lower bound and the fast estimate).

  T (0.9, 16) largest    largest subnet of configs/mcu-T.yaml at rank 0.9, patch 16 (240 px)
  T (0.9, 20) largest    the same at patch 20 (the official code's likely final space)
  T (0.4, 32) smallest   smallest subnet at rank 0.4, patch 32
  CIFAR-10 largest       largest subnet of configs/cifar10.yaml (32 px)

    python benchmarks/memory_techniques.py      # prints markdown; writes benchmarks/results/memory_techniques.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import (BOARDS, TECHNIQUES, Techniques, build_ops, check_plan, estimate,  # noqa: E402
                              memory_report, plan_arena)
from mcuformer.memory.schedule import lowest_peak, sections  # noqa: E402
from mcuformer.space import SearchSpace  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402

SHORT = {"operator_integration": "OI", "patch_decomposition": "PD", "token_overwriting": "TO", "head_by_head": "HH",
         "row_by_row": "RR"}


def archs():
    t = SearchSpace.load(ROOT / "configs/mcu-T.yaml")
    c = SearchSpace.load(ROOT / "configs/cifar10.yaml")
    return [("T (0.9, 16) largest", t.with_factors(0.9, 16).largest()),
            ("T (0.9, 20) largest", t.with_factors(0.9, 20).largest()),
            ("T (0.4, 32) smallest", t.with_factors(0.4, 32).smallest()),
            ("CIFAR-10 largest", c.largest())]


def planned(arch, techniques: Techniques) -> int:
    plan = plan_arena(build_ops(arch, techniques))
    check_plan(plan)
    if plan.arena_bytes != estimate(arch, techniques).peak_sram_bytes:
        raise SystemExit(f"estimate disagrees with the plan for {arch.short()} {techniques.label()}")
    return plan.arena_bytes


def measure(name, arch) -> dict:
    rep = memory_report(arch)
    row = {"name": name, "arch": arch.to_dict(), "short": arch.short(), "tokens": arch.num_tokens,
           "image_bytes": arch.img_size ** 2 * arch.in_chans, "params": arch.num_params(),
           "none": planned(arch, Techniques.none()),
           "alone": {t: planned(arch, Techniques.only(t)) for t in TECHNIQUES},
           "all": planned(arch, Techniques.all()),
           "all_but": {t: planned(arch, Techniques.all().without(t)) for t in TECHNIQUES},
           "lower_bound": rep.lower_bound_bytes, "layerwise_baseline": rep.layerwise_baseline_bytes,
           "official_formula": rep.official_formula_bytes, "flash": rep.flash_bytes,
           "flash_breakdown": rep.flash, "peak_op": rep.peak_op.name,
           "macs_all": rep.macs, "macs_layerwise": rep.layerwise_macs,
           # the transformer's own lowest peak: the blocks and the head, without the stem (the image)
           "blocks_peak": max(lowest_peak(k, d, Techniques.all()) for k, _, d in sections(arch) if k != "stem")}
    assert row["all"] == rep.peak_sram_bytes
    row["fits"] = {b: memory_report(arch, BOARDS[b]).fits for b in sorted(BOARDS)}
    return row


def kb(n: int) -> str:
    return f"{n / 1024:,.1f}"


def markdown(rows) -> str:
    head = ["subnet", "tokens", "none"] + [f"{SHORT[t]} alone" for t in TECHNIQUES]
    head += ["all", "lower bound", "layer-wise baseline", "official formula", "flash"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], str(r["tokens"]), kb(r["none"])] + [kb(r["alone"][t]) for t in TECHNIQUES]
        cells += [f"**{kb(r['all'])}**", kb(r["lower_bound"]), kb(r["layerwise_baseline"]), kb(r["official_formula"]),
                  kb(r["flash"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| subnet | " + " | ".join(f"all but {SHORT[t]}" for t in TECHNIQUES)
              + " | blocks' peak (all) | image | peak op (all) | MMAC all / layer-wise | fits F427 / F746 / H743 |",
              "|" + "---|" * (len(TECHNIQUES) + 6)]
    for r in rows:
        fits = " / ".join("yes" if r["fits"][b] else "no" for b in ("stm32f427", "stm32f746", "stm32h743"))
        lines.append("| " + " | ".join([r["name"]] + [kb(r["all_but"][t]) for t in TECHNIQUES]
                                       + [kb(r["blocks_peak"]), kb(r["image_bytes"]), f"`{r['peak_op']}`",
                                          f"{r['macs_all'] / 1e6:,.0f} / {r['macs_layerwise'] / 1e6:,.0f}", fits]) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/memory_techniques.json"))
    args = ap.parse_args()
    rows = [measure(name, arch) for name, arch in archs()]
    print("Peak SRAM in KB (1 KB = 1024 B; planned int8 arena, 4-byte aligned); flash in KB.\n")
    print(markdown(rows))
    write_json(args.out, {"unit": "bytes", "rows": rows})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
