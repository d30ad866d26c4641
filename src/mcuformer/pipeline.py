"""The whole pipeline, one stage after another, each reading the artifact of the one before:

    train a supernet -> evaluate its two ends -> search under the board's SRAM and flash ->
    quantise the best subnet to int8 (and measure its top-1) -> export the C engine ->
    verify it bit for bit on the host (ASan/UBSan) and on the emulated Cortex-M7

Every stage is resumable and notices change: ``<output>/stages.json`` records a fingerprint of each
stage's inputs (content hashes of the files it reads, its settings, the board, the data's path, size and
time, the stages it builds on). A rerun keeps a stage whose inputs are unchanged and whose output is
there, continues an interrupted training run or search, and reruns (after removing its old outputs in
the run folder) a stage whose inputs changed, and so every stage after it, saying why in one line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from mcuformer.errors import ConfigError
from mcuformer.utils.io import read_structured, write_json

KEYS = {"space", "train_config", "data_path", "board", "output", "gpu", "search", "quantize", "verify"}
SEARCH_DEFAULTS = {"population": 20, "generations": 6, "per_class": 50, "test_limit": 0}
QUANTIZE_DEFAULTS = {"calibration_images": 256, "method": "minmax", "test_limit": 0}
VERIFY_DEFAULTS = {"images": 5, "emulator": True}
# training settings that change how a run goes, not the supernet it trains (epochs: a finished run
# with more epochs asked continues its checkpoint, as before; exclude_split: its content is an input of its own)
TRAIN_SETTINGS_KEPT_OUT = {"epochs", "workers", "checkpoint_every_s", "eval_batch_size", "exclude_split"}


@dataclass
class PipelineConfig:
    space: list[Path]
    train_config: Path
    output: Path
    data_path: Path | None = None
    board: str = "stm32f746"
    search: dict | None = None
    quantize: dict | None = None
    verify: dict | None = None
    fingerprints: dict | None = None  # set by run_pipeline: digests of the data, board, checkpoint

    def __post_init__(self):
        for name, defaults in (("search", SEARCH_DEFAULTS), ("quantize", QUANTIZE_DEFAULTS),
                               ("verify", VERIFY_DEFAULTS)):
            given = getattr(self, name) or {}
            if not isinstance(given, dict):
                raise ConfigError(f"pipeline '{name}:' must be a mapping")
            unknown = sorted(set(given) - set(defaults))
            if unknown:
                raise ConfigError(f"pipeline '{name}:' has unknown key(s) {unknown}; known: {sorted(defaults)}")
            setattr(self, name, {**defaults, **given})
        self._check_values()

    def _check_values(self) -> None:
        """Every setting checked before the first stage starts (not after hours of training)."""
        from mcuformer.memory import get_board
        from mcuformer.utils.checks import check_number

        s, q, v = self.search, self.quantize, self.verify
        for k in ("population", "generations", "per_class"):
            check_number(s[k], f"pipeline search.{k}", integer=True, positive=True)
        check_number(s["test_limit"], "pipeline search.test_limit", integer=True, minimum=0)
        check_number(q["calibration_images"], "pipeline quantize.calibration_images", integer=True, positive=True)
        check_number(q["test_limit"], "pipeline quantize.test_limit", integer=True, minimum=0)
        if q["method"] not in ("minmax", "percentile"):
            raise ConfigError(f"pipeline quantize.method must be minmax or percentile, got {q['method']!r}")
        check_number(v["images"], "pipeline verify.images", integer=True, positive=True)
        if not isinstance(v["emulator"], bool):
            raise ConfigError(f"pipeline verify.emulator must be true or false, got {v['emulator']!r}")
        if not isinstance(self.board, str):
            raise ConfigError(f"pipeline board must be a board name, got {self.board!r}")
        get_board(self.board)
        if self.output.exists() and not self.output.is_dir():
            raise ConfigError(f"pipeline output {self.output} is a file, not a folder")

    @classmethod
    def load(cls, path, gpu: bool = False) -> "PipelineConfig":
        path = Path(path)
        d = read_structured(path)
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping")
        unknown = sorted(set(d) - KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(KEYS)}")
        if gpu:
            if not isinstance(d.get("gpu"), dict):
                raise ConfigError(f"{path} has no gpu: section")
            d = {**d, **d["gpu"]}
        for k in ("space", "train_config", "output"):
            if not d.get(k):
                raise ConfigError(f"{path}: missing '{k}'")
        here = path.parent
        spaces = d["space"] if isinstance(d["space"], list) else [d["space"]]
        for k, v in (("space", spaces), ("train_config", [d["train_config"]]), ("output", [d["output"]]),
                     ("data_path", [d["data_path"]] if d.get("data_path") else [])):
            if not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{path}: '{k}' must be a path, got {d[k]!r}")
        return cls(space=[here / s for s in spaces], train_config=here / d["train_config"],
                   output=(here / d["output"]).resolve(),
                   data_path=(here / d["data_path"]) if d.get("data_path") else None,
                   board=d.get("board") or "stm32f746", search=d.get("search"), quantize=d.get("quantize"),
                   verify=d.get("verify"))


def run_pipeline(cfg: PipelineConfig, *, epochs: int | None = None, progress: bool = True) -> dict:
    from mcuformer.api import evaluate_checkpoint
    from mcuformer.memory import get_board, memory_report
    from mcuformer.space import Arch, SearchSpace
    from mcuformer.stages import StageLedger, data_identity, digest_files, digest_settings
    from mcuformer.train import TrainConfig, load_checkpoint, train_supernet

    from mcuformer.data import resolve_data_path

    space = SearchSpace.load(cfg.space)
    board = get_board(cfg.board)  # a wrong board name fails before an hour of training
    train_cfg = TrainConfig.load(cfg.train_config)
    data = resolve_data_path(cfg.data_path)  # a missing data path fails now, not at the first stage that reads it
    if epochs is not None:
        train_cfg.epochs = epochs
    ledger = StageLedger(cfg.output)  # what each stage was last run on; a changed input reruns it
    cfg.fingerprints = {"data": data_identity(data), "board": digest_settings(asdict(board))}
    run_dir = cfg.output / "supernet"
    ckpt = run_dir / "checkpoint.pt"
    heldout_split(cfg, train_cfg, ledger)  # the search's held-out images stay out of training

    # 1. supernet training (continues an interrupted run; a finished one is kept unless its inputs changed)
    _stage("1/7 train the supernet", f"{space.name} on {cfg.data_path or 'the default CIFAR-10 archive'}")
    settings = {k: v for k, v in asdict(train_cfg).items() if k not in TRAIN_SETTINGS_KEPT_OUT}
    inputs = {"search space": digest_files(*cfg.space), "training settings": digest_settings(settings),
              "data": cfg.fingerprints["data"], "held-out split": digest_files(train_cfg.exclude_split)}
    reached = load_checkpoint(ckpt)["epoch"] if ckpt.exists() else 0
    plan = ledger.plan("train", inputs, done=reached >= train_cfg.epochs, owned=[run_dir], resumable=True,
                       state=f"checkpoint at epoch {reached} of {train_cfg.epochs}")
    _say(plan)
    if plan.run:
        summary = train_supernet(space, run_dir, train_cfg, cfg.data_path, resume=True, progress=progress)
        if summary["interrupted"]:
            return {"interrupted": True, "checkpoint": str(ckpt)}
        ledger.finish("train")
    cfg.fingerprints["checkpoint"] = digest_files(ckpt)

    # 2. accuracy of both ends of the space on the whole validation split
    _stage("2/7 evaluate", "largest and smallest subnets on the full validation split")
    ends = cfg.output / "evaluate.json"
    plan = ledger.plan("evaluate", {"checkpoint": cfg.fingerprints["checkpoint"], "data": cfg.fingerprints["data"]},
                       done=ends.exists(), owned=[ends])
    _say(plan)
    if plan.run:
        write_json(ends, evaluate_checkpoint(ckpt, ["largest", "smallest"], data_path=cfg.data_path,
                                             workers=train_cfg.workers, progress=progress))
        ledger.finish("evaluate")
    rows = read_structured(ends)
    for r in rows:
        rep = memory_report(Arch.from_dict(r["arch"]), board)
        r["memory"] = {k: v for k, v in rep.to_dict().items()
                       if k in ("peak_sram_bytes", "lower_bound_bytes", "layerwise_baseline_bytes", "flash_bytes",
                                "fits", "binding")}

    searched = search_stage(cfg, ckpt, board, train_cfg.workers, progress, ledger)
    model = quantize_stage(cfg, ckpt, searched, progress, ledger)
    engine = engine_stage(cfg, board, progress, ledger)
    result = {"space": space.name, "board": board.name, "checkpoint": str(ckpt),
              "curves": str(run_dir / "curves.png"), "subnets": rows, "searched": searched, "int8": model,
              "engine": engine, "plots": [str(run_dir / "curves.png"), str(cfg.output / "search" / "pareto.png"),
                                          str(cfg.output / "search" / "fitness.png"),
                                          str(cfg.output / "memory.png")],
              "stages_run": ledger.ran}
    write_json(cfg.output / "summary.json", result)
    return result


def heldout_split(cfg: PipelineConfig, train_cfg, ledger=None) -> None:
    """The search scores subnets on a held-out split of train; training must not see it. Use the
    training config's ``exclude_split`` when it has one, else write ``<output>/heldout-split.json``
    (``search.per_class`` images per class, seed 0) and exclude that."""
    from mcuformer.data import make_subsplit
    if not train_cfg.exclude_split:
        path = cfg.output / "heldout-split.json"
        ledger, f = _shared_inputs(cfg, ledger)
        plan = ledger.plan("held-out split", {"data": f["data"], "images per class": str(cfg.search["per_class"])},
                           done=path.exists(), owned=[path])
        _say(plan)
        if plan.run:
            make_subsplit(cfg.data_path, cfg.search["per_class"], seed=0, output=path)
            ledger.finish("held-out split")
        train_cfg.exclude_split = str(path)
    cfg.search["subsplit"] = train_cfg.exclude_split


def search_stage(cfg: PipelineConfig, ckpt: Path, board, workers: int, progress: bool, ledger=None) -> dict:
    """3. the most accurate subnet within the board's arena budget and flash"""
    from mcuformer.search import Budget, EvolutionConfig, run_search
    from mcuformer.stages import digest_files, digest_settings

    out = cfg.output / "search"
    s = cfg.search
    budget = Budget(board)
    _stage("3/7 search", f"{s['population']} x {s['generations']} generations within {budget.label()}")
    ledger, f = _shared_inputs(cfg, ledger, board=board, ckpt=ckpt)
    inputs = {"checkpoint": f["checkpoint"], "board": f["board"], "data": f["data"],
              "search settings": digest_settings({k: v for k, v in s.items() if k != "subsplit"}),
              "held-out split": digest_files(s["subsplit"]) if s.get("subsplit") else "none"}
    plan = ledger.plan("search", inputs, done=(out / "result.json").exists(), owned=[out],
                       resumable=(out / "state.json").exists(), state="continuing its saved generations")
    _say(plan)
    if plan.run:
        evo = EvolutionConfig(population=s["population"], generations=s["generations"],
                              parents=max(2, s["population"] // 5), mutations=s["population"] // 2,
                              crossovers=s["population"] // 2)
        run_search(ckpt, out, budget, evo, data_path=cfg.data_path, subsplit=cfg.search.get("subsplit"),
                   per_class=s["per_class"],
                   test_limit=s["test_limit"], test_top_k=1, baselines=False, workers=workers,
                   resume=(out / "state.json").exists(), progress=progress)
        ledger.finish("search")
    from mcuformer.utils.io import read_structured
    best = read_structured(out / "result.json")["rows"][0]
    return {"arch": best["arch"], "summary": best["summary"], "heldout_top1": best["heldout_top1"],
            "float_top1": best["test_top1"], "test_images": best["test_images"], "planned_sram_bytes":
            best["sram_bytes"], "planned_flash_bytes": best["flash_bytes"], "arch_file": str(out / "best_arch.yaml")}


def quantize_stage(cfg: PipelineConfig, ckpt: Path, searched: dict, progress: bool, ledger=None) -> dict:
    """4. int8 post-training quantisation of the searched subnet, and its int8 top-1 on the test split"""
    from mcuformer.quantize.workflow import evaluate_quantized, quantize_checkpoint
    from mcuformer.stages import digest_files, digest_settings
    from mcuformer.utils.io import read_structured

    qdir, report = cfg.output / "int8", cfg.output / "int8" / "accuracy.json"
    q = cfg.quantize
    _stage("4/7 quantize", f"int8, {q['calibration_images']} calibration images ({q['method']}), then the test split")
    ledger, f = _shared_inputs(cfg, ledger, ckpt=ckpt)
    inputs = {"checkpoint": f["checkpoint"], "searched arch": digest_files(searched["arch_file"]),
              "search": ledger.fingerprint("search"), "quantize settings": digest_settings(q), "data": f["data"]}
    plan = ledger.plan("quantize", inputs, done=(qdir / "manifest.json").exists() and report.exists(), owned=[qdir])
    _say(plan)
    if plan.run:
        quantize_checkpoint(ckpt, searched["arch_file"], qdir, data_path=cfg.data_path,
                            num_images=q["calibration_images"], method=q["method"])
        acc = evaluate_quantized(qdir, checkpoint=ckpt, data_path=cfg.data_path, limit=q["test_limit"],
                                 progress=progress)
        write_json(report, acc)
        ledger.finish("quantize")
    return read_structured(report)


def engine_stage(cfg: PipelineConfig, board, progress: bool, ledger=None) -> dict:
    """5-7. the C engine for the board; bit-exact on the host (ASan/UBSan) and on the Cortex-M7 emulator"""
    import shutil

    from mcuformer.codegen.export import export_model
    from mcuformer.memory import memory_report
    from mcuformer.memory.plot import plot_profile
    from mcuformer.quantize.model import SAVED_FILES, QuantModel
    from mcuformer.stages import digest_files, digest_settings

    qdir, cdir, report = cfg.output / "int8", cfg.output / "engine", cfg.output / "verify.json"
    _stage("5/7 export", f"C engine for {board.name} -> {cdir}")
    ledger, f = _shared_inputs(cfg, ledger, board=board)
    inputs = {"int8 model": digest_files(*(qdir / name for name in SAVED_FILES)),
              "quantize": ledger.fingerprint("quantize"), "board": f["board"]}
    plan = ledger.plan("export", inputs, done=(cdir / "export.json").exists(), owned=[cdir, cfg.output / "memory.png"])
    _say(plan)
    if plan.run:
        export_model(qdir, cdir, board, force=True)  # the pipeline's own folder
        rep = memory_report(QuantModel.load(qdir).arch, board)
        plot_profile(rep, cfg.output / "memory.png")
        ledger.finish("export")
    info = read_structured(cdir / "export.json")
    n = cfg.verify["images"]
    emulate = bool(cfg.verify["emulator"] and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
    # the sources export wrote, not what verify adds to build them (engine/build/, engine/verify/)
    engine_files = sorted(p for p in cdir.rglob("*")
                          if p.is_file() and not {"build", "verify"} & set(p.relative_to(cdir).parts))
    inputs = {"export": ledger.fingerprint("export"), "engine": digest_files(*engine_files), "data": f["data"],
              "verify settings": digest_settings({**cfg.verify, "emulator": emulate})}
    _stage("6/7 verify on the host", f"{n} test images, gcc and gcc + ASan/UBSan, against the integer reference")
    plan = ledger.plan("verify", inputs, done=report.exists(), owned=[report])
    _say(plan)
    if plan.run:
        from mcuformer.verify import verify
        checked = {"host": verify(cdir, "host", images=n, data_path=cfg.data_path).to_dict()}
        if emulate:
            _stage("7/7 verify on the Cortex-M7", f"{n} test images in qemu-system-arm -M mps2-an500")
            checked["cortex_m7"] = verify(cdir, "cortex-m7", images=n, data_path=cfg.data_path).to_dict()
        write_json(report, checked)
        ledger.finish("verify")
    elif emulate:
        _stage("7/7 verify on the Cortex-M7", f"{n} test images in qemu-system-arm -M mps2-an500")
    out = {"export": info, **read_structured(report)}
    if not emulate:
        _stage("7/7 verify on the Cortex-M7", "skipped: qemu-system-arm / arm-none-eabi-gcc not installed "
               "(scripts/setup.sh installs them)" if cfg.verify["emulator"] else "skipped by the config")
    return out


def _shared_inputs(cfg: PipelineConfig, ledger, board=None, ckpt=None):
    """The run's ledger and the digests several stages share (the data, the board, the checkpoint), each
    computed once; a stage called on its own (benchmarks/model_zoo.py) gets them here too."""
    from mcuformer.data import resolve_data_path
    from mcuformer.stages import StageLedger, data_identity, digest_files, digest_settings

    f = cfg.fingerprints = cfg.fingerprints or {}
    if "data" not in f:
        f["data"] = data_identity(resolve_data_path(cfg.data_path))
    if board is not None and "board" not in f:
        f["board"] = digest_settings(asdict(board))
    if ckpt is not None and "checkpoint" not in f:
        f["checkpoint"] = digest_files(ckpt)
    return ledger or StageLedger(cfg.output), f


def _say(plan) -> None:
    """One line per stage that reruns, saying why (a first run and a kept stage say nothing)."""
    if plan.line:
        from tqdm import tqdm
        tqdm.write(plan.line)


def _stage(title: str, detail: str) -> None:
    from tqdm import tqdm
    tqdm.write(f"\n== {title}: {detail}")


def format_summary(result: dict) -> str:
    kb = lambda b: f"{b / 1024:.1f}"  # noqa: E731
    lines = [f"supernet ({result['space']}): both ends on the validation split",
             f"{'subnet':<9}{'params':>10}{'top-1':>8}{'top-5':>8}{'SRAM KB':>9}{'flash KB':>10}  fits  arch"]
    for r in result["subnets"]:
        m = r.get("memory", {})
        fits = {True: "yes", False: "no"}.get(m.get("fits"), "-")
        lines.append(f"{r['name']:<9}{r['params']:>10,}{r['top1']:>7.2f}%{r['top5']:>7.2f}%"
                     f"{kb(m['peak_sram_bytes']):>9}{kb(m['flash_bytes']):>10}  {fits:<4}  {r['summary']}")
    s, q, e = result.get("searched"), result.get("int8"), result.get("engine")
    if s and q and e:
        host, m7 = e["host"], e.get("cortex_m7")
        lines += ["", f"searched model for {result['board']}: {s['summary']}",
                  f"{'float top-1':<30}{q['float_top1']:.2f}%  ({q['count']:,} test images)",
                  f"{'int8 top-1':<30}{q['int8_top1']:.2f}%  (the engine's integers; agreement "
                  f"{q['agreement']:.2f}%)",
                  f"{'SRAM planned':<30}{kb(e['export']['arena_bytes'])} KB arena "
                  f"(budget {kb(e['export']['board']['arena_budget_bytes'])} KB)"]
        if m7:
            lines += [f"{'SRAM measured (M7)':<30}{kb(m7['ram_bytes'])} KB = static {kb(m7['static_ram_bytes'])} + "
                      f"stack {kb(m7['stack_bytes'])} (of {kb(m7['board_sram_bytes'])} KB)",
                      f"{'flash (M7)':<30}{kb(m7['model_flash_bytes'])} KB (planned "
                      f"{kb(e['export']['planned_flash_bytes'])} KB, of {kb(m7['board_flash_bytes'])} KB)",
                      f"{'instructions/inference':<30}{m7['instructions_per_inference']:,.0f} "
                      f"({m7['instructions_per_mac']:.2f} per MAC, QEMU -icount)"]
        for name, v in (("host (ASan+UBSan)", host), ("Cortex-M7 (QEMU)", m7)):
            if v:
                lines.append(f"{'bit-exact ' + name:<30}{'yes' if v['bit_exact'] else 'NO'} on {v['images']} "
                             f"{v['image_source']}; guard damage {v['guard_damage']}")
    lines.append("plots: " + ", ".join(result.get("plots", [result["curves"]])))
    return "\n".join(lines)
