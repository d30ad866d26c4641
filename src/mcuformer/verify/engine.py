"""``mcuformer verify``: build an exported C folder, run it, and hold it to the integer reference.

On the host: gcc, and again under AddressSanitizer + UndefinedBehaviorSanitizer. On the Cortex-M7
(``cortex-m4``: the Cortex-M4F; ``cortex-m``: the export's board's core):
arm-none-eabi-gcc with the board's linker script (an image over the board's SRAM or flash fails to
link), run inside ``qemu-system-arm -M mps2-an500 -icount shift=0`` (the M4: ``-M mps2-an386``);
reports flash (.text+.rodata), static RAM (.data+.bss), the stack high-water mark, the instructions
per inference and per MAC.
Every run checks the arena's guard bytes. Logits must equal the reference's bit for bit.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mcuformer.errors import ConfigError, McuformerError
from mcuformer.memory import Techniques
from mcuformer.quantize.model import QuantModel
from mcuformer.quantize.validate import validate_quant_model
from mcuformer.utils.checks import input_file
from mcuformer.utils.io import write_text

QEMU = ["qemu-system-arm", "-M", "mps2-an500", "-cpu", "cortex-m7", "-display", "none", "-serial", "null",
        "-monitor", "none", "-semihosting", "-icount", "shift=0", "-kernel"]
QEMU_M4 = ["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", *QEMU[5:]]
_QEMU_BY_CPU = {"cortex-m7": QEMU, "cortex-m4": QEMU_M4}
CPU_NAMES = {"cortex-m7": "Cortex-M7", "cortex-m4": "Cortex-M4"}
QEMU_MACHINES = {cpu: cmd[2] for cpu, cmd in _QEMU_BY_CPU.items()}
# cortex-m: the core of the export's board (exports written before boards named one: cortex-m7).
TARGETS = ("host", "cortex-m7", "cortex-m4", "cortex-m")
MAX_VERIFY_IMAGES = 10_000  # a CIFAR-10 test set: 30 MB of int8 images in verify_data.c


class VerifyError(McuformerError):
    """The engine could not be built or run, or gave other logits than the reference."""


@dataclass
class VerifyResult:
    target: str
    images: int
    bit_exact: bool
    mismatched_images: list[int] = field(default_factory=list)
    guard_damage: int = 0
    image_source: str = ""
    build: str = ""
    sanitizers: bool = False
    arena_bytes: int = 0
    macs: int = 0
    # Cortex-M7 only
    flash_bytes: int | None = None          # what the image puts in the board's internal flash
    model_flash_bytes: int | None = None    # all flash (internal + external) less the test images
    static_ram_bytes: int | None = None     # .data + .bss
    stack_bytes: int | None = None          # high-water mark
    stack_size_bytes: int | None = None     # the linked stack (None: an export from before it was printed)
    ram_bytes: int | None = None            # static + stack
    runtime_static_bytes: int | None = None  # static RAM that is not the arena (runtime, guards)
    external_flash_bytes: int | None = None
    board_sram_bytes: int | None = None
    board_flash_bytes: int | None = None
    instructions: list[int] = field(default_factory=list)
    # mcuformer_invoke_hflip on the last image: its sums and argmax equal the reference's, and it refuses
    # the arena's input buffer as its image (None: an export from before it)
    hflip_bit_exact: bool | None = None
    hflip_refuses_overlap: bool | None = None
    hflip_instructions: int | None = None   # Cortex-M only: both inferences and the mirroring
    predictions: list[int] = field(default_factory=list)
    labels: list[int] | None = None

    @property
    def stack_overflowed(self) -> bool:
        """The high-water mark reached the stack's last word: the real use is unknown and may have gone past
        it, into the free RAM below (painting cannot tell)."""
        return self.stack_size_bytes is not None and self.stack_bytes is not None and \
            self.stack_bytes >= self.stack_size_bytes

    @property
    def instructions_per_inference(self) -> float | None:
        return float(np.mean(self.instructions)) if self.instructions else None

    @property
    def instructions_per_mac(self) -> float | None:
        return self.instructions_per_inference / self.macs if self.instructions and self.macs else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["instructions_per_inference"] = self.instructions_per_inference
        d["instructions_per_mac"] = self.instructions_per_mac
        d["stack_overflowed"] = self.stack_overflowed
        return d

    def format(self) -> str:
        if self.mismatched_images:
            logits = f"logits DIFFER on images {self.mismatched_images}"
        elif self.bit_exact or self.hflip_bit_exact is False or self.hflip_refuses_overlap is False:
            # the flip's own line below says what is wrong with it
            logits = "logits bit-exact"
        else:
            logits = "logits bit-exact, but the copying entry point's DIFFER"
        lines = [f"{self.target}{' (ASan+UBSan)' if self.sanitizers else ''}: {self.images} images ({self.image_source}), "
                 f"{logits} vs the integer reference; guard bytes damaged: {self.guard_damage}"]
        if self.ram_bytes is not None:
            kb = lambda b: f"{b / 1024:.1f} KB"  # noqa: E731
            lines.append(f"  RAM {kb(self.ram_bytes)} = static {kb(self.static_ram_bytes)} (arena "
                         f"{kb(self.arena_bytes)} + runtime {kb(self.runtime_static_bytes)}) + stack "
                         f"{self.stack_bytes} B, of {kb(self.board_sram_bytes)} SRAM")
            if self.stack_overflowed:
                lines.append(f"  STACK FULL: the high-water mark reached the bottom of the {self.stack_size_bytes} B "
                             "stack, so it may have overflowed (MCU_STACK_BYTES in the linker script sets its size)")
            ext = f" + {kb(self.external_flash_bytes)} external" if self.external_flash_bytes else ""
            lines.append(f"  flash {kb(self.flash_bytes)} internal{ext} (the model without the test images: "
                         f"{kb(self.model_flash_bytes)}), of {kb(self.board_flash_bytes)} internal")
            lines.append(f"  {self.instructions_per_inference:,.0f} instructions per inference, "
                         f"{self.instructions_per_mac:.2f} per MAC ({self.macs:,} MACs)")
        if self.hflip_bit_exact is not None:
            cost = f", {self.hflip_instructions:,} instructions" if self.hflip_instructions else ""
            overlap = "" if self.hflip_refuses_overlap else "; it did NOT refuse the arena's input buffer as its image"
            lines.append(f"  horizontal-flip entry point (mcuformer_invoke_hflip, last image): logit sums "
                         f"{'bit-exact' if self.hflip_bit_exact else 'DIFFER'}{cost}{overlap}")
        return "\n".join(lines)


def _start(cmd, cwd, what: str) -> subprocess.Popen:
    try:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        if "/" in str(cmd[0]):  # a program the build should have made, not a tool to install
            raise VerifyError(f"{what}: {cmd[0]} was not built") from None
        raise VerifyError(f"{what}: {cmd[0]} is not installed (scripts/setup.sh installs it)") from None


def _finish(proc: subprocess.Popen, timeout: int, what: str) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise VerifyError(f"{what}: no result within {timeout} s") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _stop(proc: subprocess.Popen) -> None:
    """End a started process that ``_finish`` did not collect (killing an exited one does nothing)."""
    if proc.returncode is None:
        proc.kill()
        proc.communicate()


def _run(cmd, cwd, timeout: int, what: str) -> subprocess.CompletedProcess:
    return _finish(_start(cmd, cwd, what), timeout, what)


def _tail(text: str) -> str:
    """The line of a tool's output that names the problem: its first error, else its last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower() or "overflowed" in ln or "fault" in ln.lower():
            return ln
    return lines[-1] if lines else "(no output)"


def load_export(folder) -> tuple[Path, dict, QuantModel]:
    # absolute: the build and the run execute inside the folder, whatever the caller's working directory
    folder = Path(folder).resolve()
    try:
        info = json.loads(input_file(folder / "export.json", "export.json").read_text())
        if not isinstance(info, dict):
            raise ValueError("not a mapping")
    except (McuformerError, OSError, ValueError, RecursionError):
        raise ConfigError(f"{folder}: not an exported engine (no readable export.json; run mcuformer export)") from None
    q = validate_quant_model(QuantModel.load(folder / "quantized"), str(folder / "quantized"))
    _check_export_info(folder, info, q)
    return folder, info, q


def _check_export_info(folder: Path, info: dict, q: QuantModel) -> None:
    """export.json against the quantised model beside it (both are read, neither is trusted)."""
    try:
        Techniques(**info["techniques"])
        for k in ("arena_bytes", "macs"):
            if isinstance(info[k], bool) or not isinstance(info[k], int) or info[k] < 0:
                raise ValueError(k)
        for k in ("sram_bytes", "flash_bytes"):
            if isinstance(info["board"][k], bool) or not isinstance(info["board"][k], int):
                raise ValueError(k)
        if info.get("arch") != q.arch.to_dict():
            raise ValueError("arch")
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{folder}/export.json does not match the engine beside it ({e}); export it again") from None


def pick_images(q: QuantModel, folder: Path, count: int, seed: int = 0,
                data_path=None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """int8 HWC images: the first ``count`` of the checkpoint's test split (spread over it) when the
    quantised model (read from ``folder``) names a checkpoint whose data is here, else seeded random int8
    images. A relative checkpoint name is relative to ``folder``, as models/ holds it."""
    from mcuformer.quantize.workflow import recorded_checkpoint

    checkpoint = recorded_checkpoint(q, folder)
    if data_path is not None and not (checkpoint and Path(checkpoint).exists()):
        raise ConfigError(f"--data-path {data_path}: the model's checkpoint {checkpoint} is not here to say how "
                          "to prepare its images")
    if checkpoint and Path(checkpoint).exists():
        try:
            import torch

            from mcuformer.data.datasets import spread
            from mcuformer.quantize.workflow import _dataset
            from mcuformer.train import load_checkpoint

            state = load_checkpoint(checkpoint)
            ds = _dataset(state, q.arch, data_path, "val")
            ds = ds.subset(spread(len(ds), min(count, len(ds))))
            images, labels = zip(*(ds[i] for i in range(len(ds))))
            return q.quantize_image(torch.stack(images)), np.array(labels), f"test images of {Path(checkpoint).name}'s data"
        except McuformerError:
            if data_path is not None:  # data the user named must be used, not replaced by random images
                raise
    a = q.arch
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, (count, a.img_size, a.img_size, a.in_chans), dtype=np.int8), None, "random int8"


def write_verify_data(folder: Path, images: np.ndarray) -> None:
    n, size = images.shape[0], images[0].size
    rows = ",\n".join("    {" + ",".join(map(str, im.reshape(-1).tolist())) + "}" for im in images)
    write_text(folder / "verify" / "verify_data.h",
               "#ifndef VERIFY_DATA_H\n#define VERIFY_DATA_H\n#include <stdint.h>\n"
               f"#define VERIFY_NUM_IMAGES {n}\nextern const int8_t verify_images[{n}][{size}];\n#endif\n")
    write_text(folder / "verify" / "verify_data.c",
               f'#include "verify_data.h"\n/* {n} int8 HWC test images; on the Cortex-M in section .verify_data, '
               "which the emulator's linker script keeps out of the board's flash */\n"
               "#if defined(__arm__)\n__attribute__((section(\".verify_data\")))\n#endif\n"
               f"const int8_t verify_images[{n}][{size}] = {{\n{rows}\n}};\n")


def _parse(stdout: str, count: int, classes: int) -> dict:
    logits = np.full((count, classes), 999, np.int64)
    out = {"instructions": [0] * count, "guard_damage": None, "stack": None, "stack_size": None, "copy_same": None,
           "best": [0] * count,
           "hflip_sums": None, "hflip_best": None, "hflip_instructions": None, "hflip_refuses": None}
    for line in stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "logits" and len(parts) == classes + 2:
            logits[int(parts[1])] = [int(v) for v in parts[2:]]
        elif parts[0] == "instructions":
            out["instructions"][int(parts[1])] = int(parts[2])
        elif parts[0] == "best":
            out["best"][int(parts[1])] = int(parts[2])
        elif parts[0] == "guard_damage":
            out["guard_damage"] = int(parts[1])
        elif parts[0] == "stack_high_water":
            out["stack"] = int(parts[1])
        elif parts[0] == "stack_size":
            out["stack_size"] = int(parts[1])
        elif parts[0] == "copy_path":
            out["copy_same"] = parts[1] == "same"
        elif parts[0] == "hflip_sums" and len(parts) == classes + 1:
            out["hflip_sums"] = np.array([int(v) for v in parts[1:]], np.int64)
        elif parts[0] == "hflip_best":
            out["hflip_best"] = int(parts[1])
        elif parts[0] == "hflip_refuses_overlap":
            out["hflip_refuses"] = parts[1] == "yes"
        elif parts[0] == "hflip_instructions":
            out["hflip_instructions"] = int(parts[1])
    if out["guard_damage"] is None or "done" not in stdout.split():
        raise VerifyError(f"the verification program stopped early: {_tail(stdout)}")
    out["logits"] = logits
    return out


def _section_sizes(elf: Path) -> dict[str, tuple[int, int]]:
    """{section: (size, address)} of an ELF image."""
    r = _run(["arm-none-eabi-size", "-A", str(elf)], elf.parent, 60, "size")
    sizes = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+(\d+)", line)
        if m:
            sizes[m[1]] = (int(m[2]), int(m[3]))
    return sizes


_FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".data", ".ARM.exidx", ".init_array", ".fini_array")


def check_emulator_images(images: int, arch, setting: str = "--images", instead: str = "--target host") -> None:
    """The emulated core's test images sit in a 1 MB region apart from the board's flash: a count that does not
    fit is refused before anything is built (it used to fail to link, as a model that does not fit the board)."""
    from mcuformer.codegen.linker import EMULATOR_TEST_IMAGE_BYTES

    size = arch.img_size ** 2 * arch.in_chans
    most = EMULATOR_TEST_IMAGE_BYTES // size
    if images > most:
        raise ConfigError(f"{setting} {images}: the emulated core holds at most {most} test images of "
                          f"{arch.img_size}x{arch.img_size}x{arch.in_chans} ({EMULATOR_TEST_IMAGE_BYTES // 1024} KB "
                          f"for them); use fewer, or {instead}")


def verify(folder, target: str = "host", images: int = 5, seed: int = 0, data_path=None, sanitize: bool = True,
           portable: bool = False, timeout: int = 600) -> VerifyResult:
    """Build, run and compare; raises VerifyError when the build or the run fails."""
    if target not in TARGETS:
        raise ConfigError(f"--target {target!r}: use {', '.join(TARGETS)}")
    if not 1 <= images <= MAX_VERIFY_IMAGES:
        raise ConfigError(f"--images {images}: use 1 to {MAX_VERIFY_IMAGES:,} (each is compiled into the program)")
    folder, info, q = load_export(folder)
    target = _cortex_m_target(target, info, folder)
    if target != "host":
        check_emulator_images(images, q.arch)
    imgs, labels, source = pick_images(q, folder / "quantized", images, seed, data_path)
    write_verify_data(folder, imgs)
    # the builds run while the reference computes the logits they must give (both host builds at once)
    if target == "host":
        runs = [False] + ([True] if sanitize else [])
        builds = {san: _start(["make", "-s", "host"] + (["SANITIZE=1"] if san else []), folder, "make host")
                  for san in runs}
    else:
        make = ["make", "-s", "emulator", f"MCU_CPU={target}"] + (["PORTABLE=1"] if portable else [])
        builds = {"emulator": _start(make, folder, "make emulator")}
    try:
        return _verify_built(folder, info, q, target, imgs, labels, source, builds, portable, timeout)
    finally:
        for proc in builds.values():
            _stop(proc)  # a build the result no longer needs (the first run already failed)


def _verify_built(folder: Path, info: dict, q: QuantModel, target: str, imgs, labels, source: str, builds: dict,
                  portable: bool, timeout: int) -> VerifyResult:
    from mcuformer.memory import build_ops
    from mcuformer.quantize.reference import Reference, mirror

    techniques = Techniques(**info["techniques"])
    budget = info.get("schedule_budget_bytes")  # the exporter's schedule: the reference runs the same op list
    ref = Reference(q, techniques, build_ops(q.arch, techniques, budget if isinstance(budget, int) else None))
    want = np.stack([ref.run(im) for im in imgs]).astype(np.int64)
    want_hflip = want[-1] + ref.run(mirror(imgs[-1])).astype(np.int64)  # what mcuformer_invoke_hflip must give
    classes = q.arch.num_classes
    result = VerifyResult(target, len(imgs), False, image_source=source, arena_bytes=info["arena_bytes"],
                          macs=info["macs"], labels=None if labels is None else labels.tolist())
    if target == "host":
        for san, build in builds.items():
            r = _finish(build, timeout, "make host")
            if r.returncode:
                raise VerifyError(f"host build failed: {_tail(r.stderr or r.stdout)}")
            exe = folder / ("build/host-sanitize/verify" if san else "build/host/verify")
            r = _run([str(exe)], folder, timeout, "host run")
            if r.returncode and "guard_damage" not in r.stdout:
                raise VerifyError(f"host run failed (exit {r.returncode}): {_tail(r.stderr or r.stdout)}")
            parsed = _parse(r.stdout, len(imgs), classes)
            result.sanitizers = san
            result.build = "gcc -O1 ASan+UBSan" if san else "gcc -O2"
            result = _compare(result, parsed, want, want_hflip)
            if not result.bit_exact or result.guard_damage:
                break
        return result
    r = _finish(builds["emulator"], timeout, "make emulator")
    if r.returncode:
        msg = r.stderr or r.stdout
        over = re.search(r"region `(\w+)' overflowed by (\d+) bytes", msg)
        if over:
            raise VerifyError(f"the model does not fit the board ({_board_budget(info)}): the {over[1]} region "
                              f"overflowed by {int(over[2]):,} bytes (arena {info['arena_bytes']:,} B planned)")
        raise VerifyError(f"{CPU_NAMES[target]} build failed: {_tail(msg)}")
    elf = folder / "build" / (f"{target}-portable" if portable else target) / "verify.elf"
    r = _run(_QEMU_BY_CPU[target] + [str(elf)], folder, timeout, "qemu-system-arm")
    if r.returncode and "guard_damage" not in r.stdout:
        raise VerifyError(f"the emulator run failed (exit {r.returncode}): {_tail(r.stdout + r.stderr)}")
    parsed = _parse(r.stdout, len(imgs), classes)
    result.build = "arm-none-eabi-gcc -O2 " + ("portable C" if portable else "DSP (SMLAD)")
    result = _compare(result, parsed, want, want_hflip)
    sections = _section_sizes(elf)
    sizes = {k: v[0] for k, v in sections.items()}
    # The test images: in .verify_data, which the emulator's script places outside FLASH (an export
    # from before that section existed has them in .rodata).
    images_in_flash = ".verify_data" not in sections or sections[".verify_data"][1] < info["board"]["flash_bytes"]
    result.flash_bytes = sum(v for k, v in sizes.items() if k in _FLASH_SECTIONS)
    if ".verify_data" in sections and images_in_flash:
        result.flash_bytes += sizes[".verify_data"]
    result.external_flash_bytes = sizes.get(".extflash", 0)
    result.static_ram_bytes = sizes.get(".data", 0) + sizes.get(".bss", 0)
    result.stack_bytes = parsed["stack"]
    result.stack_size_bytes = parsed["stack_size"]
    result.ram_bytes = result.static_ram_bytes + (parsed["stack"] or 0)
    result.runtime_static_bytes = result.static_ram_bytes - info["arena_bytes"]
    result.board_sram_bytes = info["board"]["sram_bytes"]
    result.board_flash_bytes = info["board"]["flash_bytes"]
    result.instructions = parsed["instructions"]
    result.hflip_instructions = parsed["hflip_instructions"]
    result.model_flash_bytes = result.flash_bytes + result.external_flash_bytes - (imgs.size if images_in_flash else 0)
    return result


def _board_budget(info: dict) -> str:
    b = info.get("board", {})
    return f"{b.get('name')}: {b.get('sram_bytes', 0) // 1024} KB SRAM, {b.get('flash_bytes', 0) // 1024} KB flash"


def _cortex_m_target(target: str, info: dict, folder: Path) -> str:
    """``target`` with ``cortex-m`` resolved to the board's core; checks that the export can build it."""
    board_cpu = info.get("board", {}).get("cpu", "cortex-m7")
    if target == "cortex-m":
        target = board_cpu
    if target == "host":
        return target
    if target != board_cpu and info.get("flash_location") == "external":
        raise ConfigError(f"{folder}: the weights are in external flash, placed for the {board_cpu} emulator; "
                          f"verify with --target {board_cpu}")
    if target == "cortex-m7":
        return target
    try:
        makefile = (folder / "Makefile").read_text()
    except OSError:
        makefile = ""
    if "MCU_CPU" not in makefile:
        raise ConfigError(f"{folder}: exported before the {target} build existed; export it again")
    return target


def _compare(result: VerifyResult, parsed: dict, want: np.ndarray, want_hflip: np.ndarray) -> VerifyResult:
    got = parsed["logits"]
    bad = [i for i in range(len(want)) if not np.array_equal(got[i], want[i])]
    result.mismatched_images = bad
    sums = parsed["hflip_sums"]
    if sums is not None or parsed["hflip_best"] is not None:  # exports from before the entry point print neither
        result.hflip_bit_exact = (sums is not None and np.array_equal(sums, want_hflip)
                                  and parsed["hflip_best"] == int(np.argmax(want_hflip)))
        result.hflip_refuses_overlap = parsed["hflip_refuses"] is True
    result.bit_exact = (not bad and bool(parsed["copy_same"]) and result.hflip_bit_exact is not False
                        and result.hflip_refuses_overlap is not False)
    result.guard_damage = parsed["guard_damage"]
    result.predictions = parsed["best"]
    return result


def clean_build(folder) -> None:
    shutil.rmtree(Path(folder) / "build", ignore_errors=True)
