"""A search under a latency limit, and its best arch measured: `mcuformer search --max-latency-ms` on the
committed tiny supernet (a short evolution on CIFAR-10 held-out images), then the best arch exported for
the board (the exporter's fastest schedule, random int8 weights: latency does not depend on them) and
run on the emulated Cortex-M7. Measured latency = QEMU instruction count / the board's clock, one
instruction per cycle (QEMU counts instructions, not cycles).

    python benchmarks/search_latency.py [--max-latency-ms 40]   # ~3 min; writes benchmarks/results/search_latency.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.codegen.export import export_model  # noqa: E402
from mcuformer.errors import CheckpointError, run_script  # noqa: E402
from mcuformer.memory import get_board  # noqa: E402
from mcuformer.quantize.synthetic import random_quant_model  # noqa: E402
from mcuformer.search.budget import Budget  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402
from mcuformer.verify import verify  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-tiny/supernet.pt"))
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--max-latency-ms", type=float, default=40.0)
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/search_latency.json"))
    args = ap.parse_args()
    ckpt = Path(args.checkpoint).resolve()  # the search below runs in the repository's folder
    if not ckpt.is_file():
        raise CheckpointError(f"checkpoint not found: {args.checkpoint}")
    board = get_board(args.board)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mcuformer-search-latency-") as tmp:
        out = Path(tmp) / "search"
        cmd = [sys.executable, "-m", "mcuformer", "search", "--checkpoint", str(ckpt), "--output", str(out),
               "--board", args.board, "--max-latency-ms", str(args.max_latency_ms), "--population", "10",
               "--generations", "3", "--parents", "4", "--mutations", "5", "--crossovers", "5", "--per-class", "20",
               "--top-k", "1", "--test-limit", "500", "--no-baselines", "--workers", "0"]
        subprocess.run(cmd, check=True, cwd=ROOT)
        best = Arch.load(out / "best_arch.yaml")
        folder = Path(tmp) / "engine"
        info = export_model(random_quant_model(best), folder, board)
        m7 = verify(folder, "cortex-m7", images=1)
    predicted = Budget(board).latency_ms(best)
    measured = m7.instructions_per_inference / (board.clock_mhz * 1e3)
    meets = m7.bit_exact and measured <= args.max_latency_ms
    print(f"best arch {best.short()}: predicted {predicted:.2f} ms, measured {measured:.2f} ms "
          f"({m7.instructions_per_inference:,.0f} instructions at {board.clock_mhz:g} MHz); limit "
          f"{args.max_latency_ms:g} ms: {'met' if meets else 'NOT met'}")
    write_json(args.output, {"what": "search --max-latency-ms, best arch measured on QEMU mps2-an500 Cortex-M7 "
                                     "(instructions / clock, 1 instruction per cycle)",
                             "board": board.name, "clock_mhz": board.clock_mhz, "max_latency_ms": args.max_latency_ms,
                             "best_arch": best.to_dict(), "short": best.short(), "predicted_ms": round(predicted, 3),
                             "measured_ms": round(measured, 3), "instructions": m7.instructions_per_inference,
                             "arena_bytes": info["arena_bytes"], "bit_exact": m7.bit_exact, "meets": meets,
                             "seconds": round(time.time() - t0, 1)})
    print(f"wrote {args.output}")
    return 0 if meets else 1


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
