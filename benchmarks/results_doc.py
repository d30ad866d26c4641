"""Write docs/results.md from the benchmark JSONs in benchmarks/results/ (nothing here is typed by hand:
every number comes from a JSON a benchmark wrote, next to the command that wrote it).

    python benchmarks/results_doc.py      # -> docs/results.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import run_script  # noqa: E402
from mcuformer.utils.io import write_text  # noqa: E402

RESULTS = ROOT / "benchmarks/results"
KB = 1024


def load(name: str):
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def load_runs(prefix: str, epochs_key: str) -> list[dict]:
    """Every ``<prefix>_*.json`` result (one per board and epoch count), in board then epoch order."""
    files = sorted(RESULTS.glob(f"{prefix}_*.json"))  # by name within a board and epoch count: a stable order
    return sorted((load(p.stem) for p in files), key=lambda d: (d["board"], d[epochs_key]))


def kb(b) -> str:
    return "-" if b is None else f"{b / KB:,.1f} KB"


def missing(cmd: str) -> str:
    return f"*Not measured yet: run `{cmd}`.*\n"


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def generic(rows: list[dict]) -> str:
    """A table of a benchmark's rows: the keys with scalar values."""
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))]
    fmt = lambda v: f"{v:,.3f}" if isinstance(v, float) else v  # noqa: E731
    return table(keys, [[fmt(r.get(k)) for k in keys] for r in rows])


def section_zoo_supernet() -> str:
    s = "## The zoo supernet (`models/cifar10-zoo/`)\n\n"
    p = ROOT / "models/cifar10-zoo/manifest.json"
    if not p.exists():
        return s + missing("python benchmarks/zoo_supernet.py ...")
    m = json.loads(p.read_text())
    c = m["compute"]
    if m.get("stages"):  # a warm restart: each training stage, then the total
        for i, st in enumerate(m["stages"], 1):
            sc = st["compute"]
            ends = st.get("metrics_test_10k")
            after = (f"; after it, 10k top-1 largest {ends['largest']['top1']:.2f} %, smallest "
                     f"{ends['smallest']['top1']:.2f} %") if ends else ""
            s += (f"{i}. `{st['command']}`: {sc['epochs']} epochs, {sc['train_seconds'] / 3600:.2f} h on "
                  f"{sc['hardware']}{after}.\n")
        s += (f"\nIn all {c['epochs']} epochs, {c['images_seen']:,} images drawn, {c['train_seconds'] / 3600:.2f} h. "
              f"Space `{m['space']['name']}`.\n\n")
    else:
        s += (f"Trained by `{m['command']}` on {c['hardware']}: {c['epochs']} epochs, {c['images_seen']:,} images, "
              f"{c['train_seconds'] / 3600:.2f} h. Space `{m['space']['name']}`.\n\n")
    if m.get("note"):
        s += m["note"] + "\n\n"
    rows = [[name, r["arch"], f"{r['params']:,}", f"{r['top1']:.2f} %", f"{r['top5']:.2f} %", kb(r["peak_sram_bytes"]),
             kb(r["flash_bytes"])] for name, r in m["metrics_test_10k"].items()]
    return s + table(["end", "subnet", "params", "top-1 (10k test)", "top-5", "peak SRAM (int8)", "flash (int8)"], rows)


def section_zoo() -> str:
    d = load("model_zoo")
    s = "## Searched int8 models (model zoo)\n\nCommand: `python benchmarks/model_zoo.py`.\n\n"
    if not d:
        return s + missing("python benchmarks/model_zoo.py")
    pct = lambda u: "-" if u is None else f"{100 * u:.1f} %"  # noqa: E731  (one decimal: 79.9 % must not print as 80 %)
    tuned = lambda r: (f", fine-tuned {r['fine_tuned_epochs']} epochs"  # noqa: E731
                       + (" (no teacher)" if r.get("fine_tune_teacher") == "none" else "")
                       + (f", weights copied from {r['fine_tune_copied_from']}'s run (the same subnet)"
                          if r.get("fine_tune_copied_from") else "")
                       + (f", elsewhere ({r['fine_tuned_checkpoint']}, not searched here)"
                          if r.get("fine_tuned_checkpoint") else "")
                       + (f", taught by the teacher of sha256 {r['fine_tune_teacher_sha256'][:12]}…"
                          if r.get("fine_tune_teacher_sha256") else "")
                       + (f" (distill_alpha {r['fine_tune_distill_alpha']:g})"
                          if r.get("fine_tune_distill_alpha") is not None else "")
                       if r.get("fine_tuned_epochs") else "")
    searched = lambda r: (f"; searched {r['search_population']} x {r['search_generations']} "  # noqa: E731
                          f"({r['search_evaluations']} subnets)" if r.get("search_evaluations") else "")
    rows = [[r["board"]["name"], f"{kb(r['board']['sram_bytes'])} / {kb(r['board']['flash_bytes'])}",
             r["summary"] + tuned(r) + searched(r), f"{r['float_top1']:.2f} %",
             f"{r['int8_top1']:.2f} % ({r['test_images']:,})",
             kb(r["planned_arena_bytes"]),
             f"{kb(r.get('measured_ram_bytes'))} ({pct(r.get('sram_used'))})",
             f"{kb(r.get('measured_flash_bytes'))} ({pct(r.get('flash_used'))})",
             f"{(r['instructions_per_inference'] or 0) / 1e6:.1f} M",
             f"{r['bit_exact_host']} / {r.get('bit_exact_emulator', r.get('bit_exact_cortex_m7'))}"]
            for r in d["rows"]]
    sha = f" (sha256 {d['supernet_sha256'][:12]}…)" if d.get("supernet_sha256") else ""
    s += f"Supernet: `{d.get('supernet', 'models/cifar10-tiny/supernet.pt')}`{sha}.\n\n"
    for row, r in zip(rows, d["rows"]):  # a board not rebuilt since the supernet changed says so
        if r.get("supernet_sha256", d.get("supernet_sha256")) != d.get("supernet_sha256"):
            row[2] += f"; from an earlier supernet (sha256 {r['supernet_sha256'][:12]}…)"
    s += table(["board", "SRAM / flash", "subnet", "float top-1", "int8 top-1 (test images)", "arena planned",
                "RAM measured (of SRAM)", "flash measured (of flash)", "instructions / inference",
                "bit-exact host / emulator"], rows)
    for board, why in (d.get("not_built") or {}).items():
        s += f"\nNo model for {board}: {why}.\n"
    if any(r.get("fine_tuned_epochs") for r in d["rows"]):
        s += ("\nA fine-tuned row's subnet was searched in the supernet, then trained on alone "
              "(`--finetune-epochs`); its float top-1 is the fine-tuned subnet's. Its command is in its `zoo.json`.\n")
    return s


def section_budget_curve() -> str:
    d, default = load("budget_curve"), "python benchmarks/budget_curve.py"
    s = "## int8 top-1 against the SRAM and flash budget\n\n"
    if not d:
        return s + f"Command: `{default}`.\n\n" + missing(default)
    took = f" ({d['seconds']} s)" if "seconds" in d else ""
    s += f"Command: `{d.get('command', default).strip()}`{took}.\n\n"
    sha = f" (sha256 {d['supernet_sha256'][:12]}…)" if d.get("supernet_sha256") else ""
    s += (f"Supernet `{d['supernet']}`{sha}; each point is one search (population {d['evolution']['population']}, "
          f"{d['evolution']['generations']} generations, fitness: held-out {d.get('fitness', 'top1')}) against random "
          "search with as many evaluations and the "
          f"hand-scaled baseline; int8 top-1 on {d['test_limit'] or 10000:,} test images spread over the test split. "
          f"The SRAM sweep holds flash at {d['base_flash_kb']} KB, the flash sweep holds SRAM at "
          f"{d['base_sram_kb']} KB (the STM32F746).\n\n![budget curve](budget_curve.png)\n\n")
    rows = []
    for r in d["rows"]:
        if "int8_top1" not in r:
            rows.append([r["sweep"], f"{r['sram_kb']:g}", f"{r['flash_kb']:g}", r["method"], "no subnet fits", "", "",
                         "", ""])
            continue
        rows.append([r["sweep"], f"{r['sram_kb']:g}", f"{r['flash_kb']:g}", r["method"], f"{r['int8_top1']:.2f} %",
                     f"{r['float_top1']:.2f} %", kb(r["sram_bytes"]), kb(r["flash_bytes"]), r["summary"]])
    return s + table(["sweep", "SRAM KB", "flash KB", "method", "int8 top-1", "float top-1", "peak SRAM",
                      "flash", "subnet"], rows)


def per_board_runs(title: str, name: str, epochs_key: str, default: str, describe, variant=None) -> str:
    """A section of one subsection per board and epoch count of a per-board result (``load_runs``): each is
    ``describe(result)``, its command paragraph and table. ``variant(result)``: what tells apart the headings of
    runs of one board and epoch count (e.g. their teacher)."""
    s = f"## {title}\n\n"
    runs = load_runs(name, epochs_key)
    if not runs:
        return s + f"Command: `{default}`.\n\n" + missing(default)
    for d in runs:
        s += (f"### {d['board']}, {d[epochs_key]} epochs" + (f", {variant(d)}" if variant else "") + "\n\n"
              + describe(d) + "\n")
    return s.rstrip("\n") + "\n"


def section_flash_fill() -> str:
    def describe(d):
        p = d["pick"]
        rows = [[r["subnet"], r["summary"], kb(r["flash_bytes"]), f"{r['float_top1']:.2f} %",
                 f"{r['int8_top1']:.2f} %", f"{r['train_loss']:.4f}",
                 f"{r['train_seconds']} (the zoo's run, copied)" if r.get("reused_from") else r["train_seconds"]]
                for r in d["rows"]]
        return (f"Command: `{d['command']}`. Supernet sha256 {d['supernet_sha256'][:12]}…. "
                f"The filling subnet is the best held-out log-likelihood ({p['heldout_loglik']:.4f}) of "
                f"{p['candidates']} seeded random subnets that fit the board with at least {100 * d['fill']:g} % of "
                f"its flash ({p['draws']} draws, {p['seconds']} s); both were then fine-tuned {d['finetune_epochs']} "
                f"epochs with the zoo's recipe (teacher: {d['teacher']}), quantised, and tested on the 10k test "
                "split.\n\n"
                + table(["subnet", "arch", "flash (memory model)", "float top-1", "int8 top-1",
                         "final training loss", "training s"], rows))

    return per_board_runs("Does filling the flash pay once fine-tuned?", "flash_fill", "finetune_epochs",
                          "python benchmarks/flash_fill.py", describe)


def section_teacher_distill() -> str:
    def teachers(d) -> list[dict]:  # one teacher, or an ensemble's
        return d["teacher"] if isinstance(d["teacher"], list) else [d["teacher"]]

    def alpha(d):  # results from before it was recorded were all made at the fine-tune's 0.5
        return d.get("distill_alpha", 0.5)

    def variant(d):
        ts = teachers(d)
        named = "" if alpha(d) == 0.5 else f", distill_alpha {alpha(d):g}"
        if len(ts) == 1:
            return f"{ts[0]['epochs']}-epoch teacher{named}"
        return f"ensemble of {' and '.join(str(t['epochs']) for t in ts)}-epoch teachers{named}"

    def describe(d):
        ts = teachers(d)
        rows = [[r["fine-tune"] + (f" (recorded in `{r['recorded_in']}`)" if r.get("recorded_in") else ""),
                 f"{r['float_top1']:.2f} %", f"{r['int8_top1']:.2f} %", r.get("train_seconds") or "-"]
                for r in d["rows"]]
        each = "; ".join(f"widths {t['widths']}, {t['epochs']} epochs in {t['train_seconds']} s, {t['test_top1']} % "
                         f"test top-1, sha256 {t['sha256'][:12]}…" for t in ts)
        by = ("a CNN teacher (`mcuformer teacher`, " if len(ts) == 1
              else f"the averaged predictions of {len(ts)} CNN teachers (`mcuformer teacher`: ")
        return (f"Command: `{d['command']}`. Supernet sha256 {d['supernet_sha256'][:12]}…; the board's zoo subnet "
                f"{d['arch']}, fine-tuned with the zoo's seeded recipe from the labels alone, and distilled from "
                f"{by}{each}) with distill_alpha {alpha(d):g} (the teacher's share of the target; 1: its "
                "prediction alone); both quantised to int8 and tested on the 10k test split.\n\n"
                + table(["fine-tune", "float top-1", "int8 top-1", "training s"], rows))

    return per_board_runs("Does a CNN teacher make a better fine-tune?", "teacher_distill", "epochs",
                          "python benchmarks/teacher_distill.py --teacher runs/teacher/teacher.pt", describe, variant)


def section_search_seeds() -> str:
    d = load("search_seeds")
    s = ("## Evolution against random search, over seeds\n\n"
         "Command: `python benchmarks/search_seeds.py`.\n\n")
    if not d:
        return s + missing("python benchmarks/search_seeds.py")
    s += (f"Supernet `{d['supernet']}` (sha256 {d['supernet_sha256'][:12]}…). At each budget (the STM32F746's "
          f"board with the SRAM and flash below), evolution (population {d['population']}, {d['generations']} "
          f"generations) and random search with as many evaluations each ran with seeds 0-{d['seeds'] - 1}. "
          f"Fitness: held-out {d['fitness']} on the {d['heldout_images']} images the supernet was trained without "
          f"(what both maximise); test top-1: the pick's float top-1 on {d['test_images']:,} test images. "
          f"{d['seconds']} s in all.\n\n")
    rows = []
    for b in d["summary"]:
        here = [r for r in d["rows"] if (r["sram_kb"], r["flash_kb"]) == (b["sram_kb"], b["flash_kb"])]
        for method in ("evolution", "random search"):
            mine = [r for r in here if r["method"] == method]
            f, t = [r["fitness"] for r in mine], [r["test_top1"] for r in mine]
            mean, sd = statistics.fmean, statistics.stdev
            rows.append([f"{b['sram_kb']:g}", f"{b['flash_kb']:g}", method, f"{mean(f):.4f} ± {sd(f):.4f}",
                         f"{mean(t):.2f} ± {sd(t):.2f} %", kb(mean([r["flash_bytes"] for r in mine]))])
    s += table(["SRAM KB", "flash KB", "method", "fitness, mean ± sd", "test top-1, mean ± sd", "mean flash"], rows)
    paired = [[f"{b['sram_kb']:g}", f"{b['flash_kb']:g}",
               f"{b['fitness']['wins']}/{b['fitness']['seeds']}, {b['fitness']['mean_difference']:+.4f} ± "
               f"{b['fitness']['standard_error']:.4f}",
               f"{b['test_top1']['wins']}/{b['test_top1']['seeds']}, {b['test_top1']['mean_difference']:+.2f} ± "
               f"{b['test_top1']['standard_error']:.2f} pt"] for b in d["summary"]]
    s += ("\nPaired by seed, evolution minus random search (seeds where evolution's pick is better; mean difference "
          "± its standard error):\n\n")
    return s + table(["SRAM KB", "flash KB", "fitness", "test top-1"], paired)


def section_fitness_fidelity() -> str:
    d = load("fitness_fidelity")
    s = ("## How well the search's fitness predicts test accuracy\n\n"
         "Command: `python benchmarks/fitness_fidelity.py`.\n\n")
    if not d:
        return s + missing("python benchmarks/fitness_fidelity.py")
    truth = [r["test_top1"] for r in d["rows"]]
    s += (f"Supernet `{d['supernet']}` (sha256 {d['supernet_sha256'][:12]}…); {len(d['rows'])} random subnets "
          f"that fit the {d['board']}, each scored on the {d['heldout_images']} held-out images (the search's "
          "fitness set) and "
          f"on {d['test_images']:,} test images (the truth: float top-1 from {min(truth):.2f} to {max(truth):.2f} %). "
          "Regret: the truth of the best candidate minus the truth of the one the proxy ranks first; over all "
          f"candidates, and averaged over random groups of {d['group']}. The ceiling row scores on one half of the "
          "test split and checks against the other half.\n\n![fitness fidelity](fitness_fidelity.png)\n\n")
    half = d["test_images"] // 2
    names = {"heldout_top1": "held-out top-1 (the search's fitness)", "heldout_loglik": "held-out log-likelihood",
             "heldout_prob": "held-out p(true class)",
             "test_half": f"test top-1 on {half:,} images, checked on the other {half:,} (ceiling)",
             "flash": "flash used (bigger is better)"}
    rows = [[names.get(k, k), f"{v['spearman']:.3f}", f"{v['kendall_tau_b']:.3f}", f"{v['regret_all']:.2f} pt",
             f"{v['regret_group_mean']:.2f} pt"] for k, v in d["stats"].items()]
    rp = d["random_pick_regret"]
    rows.append(["a random pick (expected)", "", "", f"{rp['all']:.2f} pt", f"{rp['group_mean']:.2f} pt"])
    return s + table(["proxy", "Spearman", "Kendall tau-b", "regret (all)", f"regret (groups of {d['group']})"], rows)


def section_budget() -> str:
    s = "## Accuracy against the SRAM budget (CIFAR-10)\n\nCommand: `python benchmarks/search_compare.py`.\n\n"
    rows = []
    for name in ("search_compare_clean", "search_compare"):
        d = load(name)
        if not d:
            continue
        for run in d["runs"]:
            for r in run["rows"]:
                rows.append([name, run["budget_label"], r["method"], f"{r['test_top1']:.2f} %", kb(r["sram_bytes"]),
                             kb(r["flash_bytes"]), r["summary"]])
        if d.get("every_subnet_fits_128k_512k"):
            s += (f"`{name}`: every subnet of the tiny space fits every budget from 128 KB to 512 KB, so the curve "
                  "is flat there. The table shows the budgets that bind.\n\n")
    if not rows:
        return s + missing("python benchmarks/search_compare.py")
    return s + table(["run", "budget", "method", "test top-1", "SRAM", "flash", "subnet"], rows)


def section_memory() -> str:
    d = load("memory_techniques")
    s = ("## Memory of the three techniques on the paper's 240×240 setting\n\n"
         "Command: `python benchmarks/memory_techniques.py`. Planned int8 arenas, each equal to its lower bound.\n\n")
    if not d:
        return s + missing("python benchmarks/memory_techniques.py")
    rows = [[r["name"], r["tokens"], kb(r["none"]), kb(r["alone"]["operator_integration"]),
             kb(r["alone"]["patch_decomposition"]), kb(r["alone"]["token_overwriting"]), kb(r["all"]),
             kb(r["layerwise_baseline"]), kb(r["official_formula"]), kb(r["flash"])] for r in d["rows"]]
    return s + table(["subnet", "tokens", "none", "OI alone", "PD alone", "TO alone", "all", "layer-wise (TFLM)",
                      "official formula", "flash"], rows)


def section_engine() -> str:
    s = "## The engine on the Cortex-M7 (QEMU instruction counts)\n\n"
    d = load("engine_imagenet_shape")
    if d:
        m = d["measured"]
        s += ("Command: `python benchmarks/engine_imagenet_shape.py`. A 240×240 subnet with random weights, built "
              "for the STM32F746 and run on the emulated M7:\n\n")
        s += table(["subnet", "tokens", "MMAC", "arena planned", "RAM measured (static + stack)", "flash internal",
                    "flash external (QSPI)", "instructions / inference", "per MAC", "logits"],
                   [[d["short"], d["tokens"], f"{d['macs'] / 1e6:.0f}", kb(d["planned_arena_bytes"]),
                     f"{kb(m['ram_bytes'])} ({kb(m['static_ram_bytes'])} + {m['stack_bytes']} B)",
                     kb(m["model_flash_bytes"] - m["external_flash_bytes"]), kb(m["external_flash_bytes"]),
                     f"{m['instructions_per_inference'] / 1e6:,.0f} M", f"{m['instructions_per_mac']:.2f}",
                     "bit-exact" if d["bit_exact"] else "DIFFER"]])
    else:
        s += missing("python benchmarks/engine_imagenet_shape.py")
    d = load("engine_speed")
    s += "\nCommand: `python benchmarks/engine_speed.py`. Instructions per MAC, portable C against the DSP path.\n\n"
    if not d:
        return s + missing("python benchmarks/engine_speed.py")
    for key, value in d.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            s += f"**{key}**\n\n" + generic(value) + "\n"
    return s


def section_throughput() -> str:
    s = "## Supernet training throughput\n\nCommand: `python benchmarks/train_throughput.py --cifar`.\n\n"
    d = load("train_throughput_cifar10_cpu")
    if not d:
        return s + missing("python benchmarks/train_throughput.py --cifar")
    rows = [[r["mode"], r["batch"], f"{r['img_per_s']:.1f}", f"{r['median_step_ms']:.0f}"] for r in d["rows"]]
    base = next((r["img_per_s"] for r in d["rows"] if r["mode"] == "official-style"), None)
    best = max(r["img_per_s"] for r in d["rows"])
    s += f"Device: {d['device']}, torch {d['torch']}, {d['space']} space.\n\n"
    s += table(["mode", "batch", "img/s", "median step ms"], rows)
    if base:
        s += f"\nSpeed-up over the same-run official-style baseline: {best / base:.2f}×. "
    s += f"The official implementation's figure is {d['official_h100_img_per_s']} img/s on an H100 for the T space.\n"
    g = load("train_throughput_official-T_h200")
    if not g:
        return s + "\nOur GPU figure is not measured: no GPU was lent.\n"
    rows = [[r["mode"], r["batch"], f"{r['img_per_s']:.0f}", f"{r['median_step_ms']:.1f}", f"{r['peak_mem_gb']:.2f}"]
            for r in g["rows"]]
    base = next((r["img_per_s"] for r in g["rows"] if r["mode"] == "official-style"), None)
    s += (f"\nThe T space ({g['img_size']}x{g['img_size']}, patch {g['patch_size'][0]}, rank ratio {g['rank_ratio'][0]}) on "
          f"{g['device']}, torch {g['torch']}, {g['steps']} steps, from the tail of the first GPU slot "
          "(`scripts/device_train.sh`; `benchmarks/results/train_throughput_official-T_h200.json`):\n\n")
    s += table(["mode", "batch", "img/s", "median step ms", "peak GB"], rows)
    if base:
        best = max(r["img_per_s"] for r in g["rows"])
        s += (f"\nSpeed-up over the same-run official-style baseline: {best / base:.2f}×; "
              f"{best / g['official_h100_img_per_s']:.1f}× the official figure, on an H200 rather than an H100.")
        again = load("train_throughput_official-T_h200_rerun") or {}
        rerun = next((r["img_per_s"] for r in again.get("rows", []) if r["mode"] == "official-style"), None)
        if rerun:
            s += (f" One run of {g['steps']} steps each: the slot's second call measured the baseline alone at "
                  f"{rerun:,.0f} img/s, so the spread between runs is large.")
        s += "\n"
    return s


def section_quant() -> str:
    d = load("quant_accuracy")
    s = "## int8 against float (CIFAR-10, 10k test images)\n\nCommand: `python benchmarks/quant_accuracy.py`.\n\n"
    if not d:
        return s + missing("python benchmarks/quant_accuracy.py")
    rows = [[r["name"], r["arch"], r["method"], f"{r['float_top1']:.2f} %", f"{r['int8_top1']:.2f} %",
             f"{r['agreement']:.2f} %"] for r in d["results"]]
    return s + table(["subnet", "arch", "calibration", "float top-1", "int8 top-1", "same prediction"], rows)


def section_calibration() -> str:
    d = load("calibration")
    s = "## Calibration: min/max against percentile (CIFAR-10, 10k test images)\n\n"
    if not d:
        return s + missing("python benchmarks/calibration.py")
    pct = d.get("percentile", 99.99)  # the first run recorded none: the default then
    s += (f"Command: `{d['command']}`. {d['calibration_images']} training images set each tensor's range: its "
          f"min and max, or each batch's {100 - pct:.2g} and {pct:g} percentiles averaged. The gain is the "
          "percentile's int8 top-1 minus min/max's, on the same images.\n\n")
    rows = [[r["subnet"], r["arch"], r["seed"], f"{r['float_top1']:.2f} %",
             f"{r['minmax']['int8_top1']:.2f} % ({r['minmax']['agreement']:.2f} %)",
             f"{r['percentile']['int8_top1']:.2f} % ({r['percentile']['agreement']:.2f} %)", f"{r['gain']:+.2f}"]
            for r in d["results"]]
    return s + table(["subnet", "arch", "seed", "float top-1", "min/max int8 (same prediction)",
                      "percentile int8 (same prediction)", "gain"], rows)


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    parts = ["# Results\n",
             "Generated by `python benchmarks/results_doc.py` from `benchmarks/results/*.json`. Every figure was "
             "measured by the command named above its table, on a 2-core x86-64 CPU unless a table says "
             "otherwise. CIFAR-10 is the JPEG (q75) re-encoding in `../shared/data`: accuracies are comparable "
             "with published CIFAR-10 figures, but not identical to them.\n",
             section_zoo_supernet(), section_zoo(), section_budget_curve(), section_flash_fill(),
             section_teacher_distill(),
             section_search_seeds(), section_fitness_fidelity(),
             section_budget(), section_memory(), section_engine(), section_quant(), section_calibration(),
             section_throughput()]
    write_text(ROOT / "docs/results.md", "\n".join(parts))
    print(f"wrote {ROOT / 'docs/results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
