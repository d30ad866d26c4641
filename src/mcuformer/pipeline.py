"""The whole pipeline, one stage after another, each reading the artifact of the one before:

    start from the zoo supernet (or train one: --train) -> evaluate its two ends -> search under the
    board's SRAM and flash -> (fine-tune the best subnet) -> quantise it to int8 (and measure its
    top-1) -> export the C engine -> verify it bit for bit on the host (ASan/UBSan) and on the
    emulated Cortex-M of the board

Every stage is resumable and notices change: ``<output>/stages.json`` records a fingerprint of each
stage's inputs (content hashes of the files it reads, its settings, the board, the data's path, size and
time, the stages it builds on). A rerun keeps a stage whose inputs are unchanged and whose output is
there, continues an interrupted training run or search, and reruns (after removing its old outputs in
the run folder) a stage whose inputs changed, and so every stage after it, saying why in one line.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mcuformer.errors import ConfigError, McuformerError
from mcuformer.quantize.settings import (CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES, DEFAULT_METHOD,
                                         DEFAULT_PERCENTILE, PERCENTILE_FLOOR)
from mcuformer.utils.io import missing_folders, read_structured, remove_empty_folders, write_json

KEYS = {"space", "train_config", "data_path", "board", "output", "gpu", "search", "quantize", "verify", "supernet",
        "heldout_split", "sram_kb", "flash_kb", "allow_external_flash", "finetune"}
SEARCH_DEFAULTS = {"population": 20, "generations": 6, "per_class": 50, "test_limit": 0, "fitness": "loglik"}
# epochs 0: no fine-tuning stage; teacher: true (the supernet's largest), false (none), a teacher file or a list
# of them (their ensemble); distill_alpha: the teacher's share of the target, the labels' the rest
FINETUNE_DEFAULTS = {"epochs": 0, "teacher": True, "distill_alpha": 0.5}
QUANTIZE_DEFAULTS = {"calibration_images": DEFAULT_CALIBRATION_IMAGES, "method": DEFAULT_METHOD,
                     "percentile": DEFAULT_PERCENTILE, "test_limit": 0}
VERIFY_DEFAULTS = {"images": 5, "emulator": True}
# training settings that change how a run goes, not the supernet it trains (epochs: a finished run
# with more epochs asked continues its checkpoint, as before; exclude_split: its content is an input of its own)
TRAIN_SETTINGS_KEPT_OUT = {"epochs", "workers", "checkpoint_every_s", "eval_batch_size", "exclude_split"}
STAGES = 8


@dataclass
class PipelineConfig:
    space: list[Path]
    train_config: Path | None
    output: Path
    data_path: Path | None = None
    board: str = "stm32f746"
    search: dict | None = None
    quantize: dict | None = None
    verify: dict | None = None
    supernet: Path | None = None        # a trained supernet to start from (the zoo's): no training stage
    heldout_split: Path | None = None   # the split that supernet was trained without (default: its record)
    sram_kb: float | None = None        # custom budgets over the board's (KB = 1024 bytes)
    flash_kb: float | None = None
    allow_external_flash: bool = False  # constants past the internal flash go to the board's QSPI flash
    finetune: dict | None = None
    fingerprints: dict | None = None  # set by run_pipeline: digests of the data, board, checkpoint

    def __post_init__(self):
        for name, defaults in (("search", SEARCH_DEFAULTS), ("quantize", QUANTIZE_DEFAULTS),
                               ("verify", VERIFY_DEFAULTS), ("finetune", FINETUNE_DEFAULTS)):
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
        from mcuformer.utils.checks import check_number

        s, q, v, t = self.search, self.quantize, self.verify, self.finetune
        for k in ("population", "generations", "per_class"):
            check_number(s[k], f"pipeline search.{k}", integer=True, positive=True)
        check_number(s["test_limit"], "pipeline search.test_limit", integer=True, minimum=0)
        if s["fitness"] not in ("top1", "loglik"):
            raise ConfigError(f"pipeline search.fitness must be top1 or loglik, got {s['fitness']!r}")
        check_number(q["calibration_images"], "pipeline quantize.calibration_images", integer=True, positive=True)
        check_number(q["test_limit"], "pipeline quantize.test_limit", integer=True, minimum=0)
        if q["method"] not in CALIBRATION_METHODS:
            raise ConfigError(f"pipeline quantize.method must be minmax or percentile, got {q['method']!r}")
        if check_number(q["percentile"], "pipeline quantize.percentile", maximum=100) <= PERCENTILE_FLOOR:
            raise ConfigError(f"pipeline quantize.percentile must be above {PERCENTILE_FLOOR:g}, got {q['percentile']}")
        from mcuformer.verify.engine import MAX_VERIFY_IMAGES
        check_number(v["images"], "pipeline verify.images", integer=True, positive=True, maximum=MAX_VERIFY_IMAGES)
        check_number(t["epochs"], "pipeline finetune.epochs", integer=True, minimum=0)
        check_number(t["distill_alpha"], "pipeline finetune.distill_alpha", minimum=0, maximum=1)
        if not isinstance(v["emulator"], bool):
            raise ConfigError(f"pipeline verify.emulator must be true or false, got {v['emulator']!r}")
        teacher = t["teacher"]
        files = [teacher] if isinstance(teacher, str) else teacher if isinstance(teacher, list) else None
        if files is not None and files and all(isinstance(f, str) for f in files):
            # teacher files (`mcuformer teacher`'s, or fine-tuning checkpoints); several: their ensemble
            from mcuformer.train.teacher import teacher_fingerprint
            from mcuformer.utils.checks import input_file
            for f in files:
                input_file(f, "pipeline finetune.teacher file")
            teacher_fingerprint(files)  # one teacher twice fails now
        elif not isinstance(teacher, bool):
            raise ConfigError("pipeline finetune.teacher must be true, false, a teacher file or a list of them, got "
                              f"{teacher!r}")
        if not isinstance(self.allow_external_flash, bool):
            raise ConfigError(f"pipeline allow_external_flash must be true or false, got {self.allow_external_flash!r}")
        if not isinstance(self.board, str):
            raise ConfigError(f"pipeline board must be a board name, got {self.board!r}")
        self.target_board()  # an unknown board or an impossible budget fails now
        if self.output.exists() and not self.output.is_dir():
            raise ConfigError(f"pipeline output {self.output} is a file, not a folder")

    def target_board(self):
        """The board, with the config's custom SRAM and flash budgets when it sets them."""
        from mcuformer.memory import get_board
        return get_board(self.board).with_overrides(sram_kb=self.sram_kb, flash_kb=self.flash_kb)

    @classmethod
    def load(cls, path, gpu: bool = False, train: bool = False, board: str | None = None,
             output: str | None = None) -> "PipelineConfig":
        """``train``: train a supernet (the config's space and train_config) even when it names one to
        start from; ``board``/``output``: override the config's."""
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
            train = True  # the GPU section trains its own supernet
        if train or not d.get("supernet"):
            d.pop("supernet", None)
            need = ("space", "train_config", "output")
        else:
            need = ("output",)
        for k in need:
            if not d.get(k):
                raise ConfigError(f"{path}: missing '{k}'" + (" (--train needs it)" if train and k != "output" else ""))
        here = path.parent
        spaces = d["space"] if isinstance(d.get("space"), list) else [d["space"]] if d.get("space") else []
        for k, v in (("space", spaces), ("train_config", [d["train_config"]] if d.get("train_config") else []),
                     ("output", [d["output"]]), ("data_path", [d["data_path"]] if d.get("data_path") else []),
                     ("supernet", [d["supernet"]] if d.get("supernet") else []),
                     ("heldout_split", [d["heldout_split"]] if d.get("heldout_split") else [])):
            if not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{path}: '{k}' must be a path, got {d[k]!r}")
        for k in ("sram_kb", "flash_kb"):
            if d.get(k) is not None and (isinstance(d[k], bool) or not isinstance(d[k], (int, float))):
                raise ConfigError(f"{path}: '{k}' must be a number of KB, got {d[k]!r}")
        opt = lambda k: (here / d[k]).resolve() if d.get(k) else None  # noqa: E731 (no "configs/../" in messages)
        return cls(space=[(here / s).resolve() for s in spaces], train_config=opt("train_config"),
                   output=Path(output).resolve() if output else (here / d["output"]).resolve(),
                   data_path=opt("data_path"), board=board or d.get("board") or "stm32f746",
                   search=d.get("search"), quantize=d.get("quantize"), verify=d.get("verify"),
                   supernet=opt("supernet"), heldout_split=opt("heldout_split"), sram_kb=d.get("sram_kb"),
                   flash_kb=d.get("flash_kb"), allow_external_flash=d.get("allow_external_flash", False),
                   finetune=_teacher_beside(d.get("finetune"), here))


def _teacher_beside(finetune, here: Path):
    """The finetune section with its teacher files named relative to the config, as its other paths are."""
    if isinstance(finetune, dict) and isinstance(finetune.get("teacher"), str):
        return {**finetune, "teacher": str((here / finetune["teacher"]).resolve())}
    if isinstance(finetune, dict) and isinstance(finetune.get("teacher"), list):
        return {**finetune, "teacher": [str((here / f).resolve()) if isinstance(f, str) else f
                                        for f in finetune["teacher"]]}
    return finetune


def _check_output_folder(path: Path) -> None:
    """An output folder that cannot be made fails now, not after the first stage's minutes. The folders made
    to find that out are removed again (empty, leaf first), so a run that stops on a later error leaves none."""
    missing = missing_folders(path)
    problem = None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        problem = e.strerror or str(e)
    remove_empty_folders(missing)  # also those made before a failure
    if problem:
        raise ConfigError(f"pipeline output {path}: cannot create it ({problem})")


def run_pipeline(cfg: PipelineConfig, *, epochs: int | None = None, progress: bool = True) -> dict:
    from mcuformer.api import evaluate_checkpoint
    from mcuformer.data import resolve_data_path
    from mcuformer.memory import memory_report
    from mcuformer.space import Arch
    from mcuformer.stages import StageLedger, code_digest, data_identity, digest_settings

    started = time.perf_counter()
    board = cfg.target_board()  # a wrong board name fails before an hour of training
    data = resolve_data_path(cfg.data_path)  # a missing data path fails now, not at the first stage that reads it
    _check_output_folder(cfg.output)
    ledger = StageLedger(cfg.output)  # what each stage was last run on; a changed input reruns it
    cfg.fingerprints = {"data": data_identity(data), "board": digest_settings(asdict(board))}
    if cfg.supernet is not None:
        ckpt, space_name, curves = supernet_stage(cfg, ledger)
        workers = 1
    else:
        trained = train_stage(cfg, ledger, epochs, progress)
        if trained.get("interrupted"):
            return trained
        ckpt, space_name, curves, workers = (trained[k] for k in ("checkpoint", "space", "curves", "workers"))

    # 2. accuracy of both ends of the space on the whole validation split
    _stage(2, "evaluate", "largest and smallest subnets on the full validation split")
    ends = cfg.output / "evaluate.json"
    plan = ledger.plan("evaluate", {"checkpoint": cfg.fingerprints["checkpoint"], "data": cfg.fingerprints["data"],
                                    "code": code_digest("supernet", "train", "data")},
                       done=ends.exists(), owned=[ends])
    _say(plan)
    if plan.run:
        write_json(ends, evaluate_checkpoint(ckpt, ["largest", "smallest"], data_path=cfg.data_path,
                                             workers=workers, progress=progress))
        ledger.finish("evaluate")
    rows = read_structured(ends)
    for r in rows:
        rep = memory_report(Arch.from_dict(r["arch"]), board, allow_external_flash=cfg.allow_external_flash)
        r["memory"] = {k: v for k, v in rep.to_dict().items()
                       if k in ("peak_sram_bytes", "lower_bound_bytes", "layerwise_baseline_bytes", "flash_bytes",
                                "fits", "binding")}

    searched = search_stage(cfg, ckpt, board, workers, progress, ledger)
    deployed = finetune_stage(cfg, ckpt, searched, progress, ledger)
    if deployed is None:
        return {"interrupted": True, "checkpoint": str(cfg.output / "finetune" / "checkpoint.pt")}
    model = quantize_stage(cfg, deployed, searched, progress, ledger)
    engine = engine_stage(cfg, board, progress, ledger)
    zoo = zoo_model(ckpt, board, cfg.allow_external_flash)
    result = {"space": space_name, "board": board.name, "budget": board.to_dict(),
              "allow_external_flash": cfg.allow_external_flash, "checkpoint": str(ckpt),
              "deployed_checkpoint": str(deployed), "curves": str(curves), "subnets": rows, "searched": searched,
              "int8": model, "engine": engine,
              "plots": [str(p) for p in (curves, cfg.output / "search" / "pareto.png",
                                         cfg.output / "search" / "fitness.png", cfg.output / "memory.png") if p],
              "stages_run": ledger.ran, "stage_seconds": dict(ledger.seconds),
              "seconds": round(time.perf_counter() - started, 1)}
    if zoo is not None and zoo["int8_top1"] > model["int8_top1"]:
        result["zoo_model"] = zoo
    write_json(cfg.output / "summary.json", result)
    return result


def zoo_model(ckpt: Path, board, allow_external_flash: bool) -> dict | None:
    """The ready model that `benchmarks/model_zoo.py` built for this board from this very supernet (a longer
    search and a fine-tune, which the pipeline does not run by default), if there is one beside it and it
    was sized for the same budget. The summary points at it; a missing or malformed entry is no error."""
    from mcuformer.utils.io import file_sha256

    entry = Path(ckpt).parent / f"int8-{board.name}" / "zoo.json"
    if allow_external_flash or not entry.is_file():
        return None
    try:
        z = read_structured(entry)
    except McuformerError:
        return None
    if not isinstance(z, dict) or not isinstance(z.get("board"), dict):
        return None
    numbers = [z.get(k) for k in ("int8_top1", "measured_flash_bytes", "measured_ram_bytes")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e12 for v in numbers):
        return None
    same_budget = all(z["board"].get(k) == getattr(board, k) for k in ("sram_bytes", "flash_bytes"))
    if not same_budget or z.get("bit_exact_host") is not True or z.get("supernet_sha256") != file_sha256(ckpt):
        return None
    epochs = z.get("fine_tuned_epochs")
    return {"folder": str(entry.parent), "summary": str(z.get("summary", "")), "int8_top1": float(numbers[0]),
            "flash_bytes": int(numbers[1]), "ram_bytes": int(numbers[2]),
            "fine_tuned_epochs": epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else 0,
            "emulated_core": z.get("measured_on") if z.get("bit_exact_emulator") is True else None}


def supernet_stage(cfg: PipelineConfig, ledger) -> tuple[Path, str, Path | None]:
    """1. a trained supernet to start from (the zoo's): checked, fingerprinted, its held-out split found"""
    from mcuformer.stages import digest_files
    from mcuformer.train import load_checkpoint, space_of
    from mcuformer.train.checkpoint import recorded_split

    ckpt = Path(cfg.supernet)
    if not ckpt.is_file():
        raise ConfigError(f"supernet {ckpt} not found: point 'supernet:' at a trained supernet, or train one with "
                          "`mcuformer pipeline --train`")
    state = load_checkpoint(ckpt)
    space = space_of(state)
    _stage(1, "supernet", f"{space.name} from {ckpt} (no training; --train trains one from scratch)")
    ledger, f = _shared_inputs(cfg, ledger)
    f["checkpoint"] = digest_files(ckpt)  # the stages after this one rerun when it changes
    split = cfg.heldout_split or recorded_split(ckpt, state)
    if split is not None and not Path(split).is_file():
        raise ConfigError(f"held-out split {split} not found (the images {ckpt.name} was trained without)")
    # a supernet that trained on all of train gets a new split, and the search warns that its scores are optimistic
    cfg.search["subsplit"] = str(split or new_heldout_split(cfg, ledger))
    curves = ckpt.parent / "curves.png"
    return ckpt, space.name, curves if curves.is_file() else None


def train_stage(cfg: PipelineConfig, ledger, epochs: int | None, progress: bool) -> dict:
    """1. supernet training (continues an interrupted run; a finished one is kept unless its inputs changed)"""
    from mcuformer.space import SearchSpace
    from mcuformer.stages import digest_files, digest_settings
    from mcuformer.train import TrainConfig, load_checkpoint, train_supernet

    space = SearchSpace.load(cfg.space)
    train_cfg = TrainConfig.load(cfg.train_config)
    if epochs is not None:
        train_cfg.epochs = epochs
    run_dir = cfg.output / "supernet"
    ckpt = run_dir / "checkpoint.pt"
    heldout_split(cfg, train_cfg, ledger)  # the search's held-out images stay out of training
    _stage(1, "train the supernet", f"{space.name} on {cfg.data_path or 'the default CIFAR-10 archive'}")
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
    return {"checkpoint": ckpt, "space": space.name, "curves": run_dir / "curves.png", "workers": train_cfg.workers}


def heldout_split(cfg: PipelineConfig, train_cfg, ledger=None) -> None:
    """The search scores subnets on a held-out split of train; training must not see it. Use the
    training config's ``exclude_split`` when it has one, else a new one (``new_heldout_split``)."""
    if not train_cfg.exclude_split:
        train_cfg.exclude_split = str(new_heldout_split(cfg, ledger))
    cfg.search["subsplit"] = train_cfg.exclude_split


def new_heldout_split(cfg: PipelineConfig, ledger=None) -> Path:
    """``<output>/heldout-split.json``: ``search.per_class`` train images per class, seed 0."""
    from mcuformer.data import make_subsplit
    path = cfg.output / "heldout-split.json"
    ledger, f = _shared_inputs(cfg, ledger)
    plan = ledger.plan("held-out split", {"data": f["data"], "images per class": str(cfg.search["per_class"])},
                       done=path.exists(), owned=[path])
    _say(plan)
    if plan.run:
        make_subsplit(cfg.data_path, cfg.search["per_class"], seed=0, output=path)
        ledger.finish("held-out split")
    return path


def search_stage(cfg: PipelineConfig, ckpt: Path, board, workers: int, progress: bool, ledger=None) -> dict:
    """3. the most accurate subnet within the board's arena budget and flash"""
    from mcuformer.search import Budget, EvolutionConfig, run_search
    from mcuformer.stages import code_digest, digest_files, digest_settings

    out = cfg.output / "search"
    s = cfg.search
    budget = Budget(board, allow_external_flash=cfg.allow_external_flash)
    _stage(3, "search", f"{s['population']} x {s['generations']} generations within {budget.label()}")
    ledger, f = _shared_inputs(cfg, ledger, board=board, ckpt=ckpt)
    inputs = {"checkpoint": f["checkpoint"], "board": f["board"], "data": f["data"],
              "search settings": digest_settings({**{k: v for k, v in s.items() if k != "subsplit"},
                                                  "allow_external_flash": cfg.allow_external_flash}),
              "held-out split": digest_files(s["subsplit"]) if s.get("subsplit") else "none",
              "code": code_digest("search", "memory", "supernet", "data")}
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
                   resume=(out / "state.json").exists(), progress=progress, fitness=s["fitness"])
        ledger.finish("search")
    from mcuformer.utils.io import read_structured
    result = read_structured(out / "result.json")
    best = result["rows"][0]
    return {"evaluations": result["evaluations"], "arch": best["arch"], "summary": best["summary"],
            "heldout_top1": best["heldout_top1"], "float_top1": best["test_top1"], "test_images": best["test_images"],
            "planned_sram_bytes": best["sram_bytes"], "planned_flash_bytes": best["flash_bytes"],
            "arch_file": str(out / "best_arch.yaml")}


def finetune_stage(cfg: PipelineConfig, ckpt: Path, searched: dict, progress: bool, ledger=None,
                   donors=()) -> Path | None:
    """4. (``finetune.epochs`` > 0) train the searched subnet on its own, taught by the supernet's largest
    subnet; returns the checkpoint to quantise (the supernet's when there is no fine-tuning; None when
    interrupted). ``donors``: other run folders (other boards' runs) whose finished fine-tune of the same
    subnet, supernet, data and settings is copied instead of trained again (see ``reusable_finetune``)."""
    from mcuformer.api import finetune_subnet
    from mcuformer.stages import digest_files, digest_settings
    from mcuformer.train import TrainConfig, load_checkpoint
    from mcuformer.train.config import finetune_settings

    t, out = cfg.finetune, cfg.output / "finetune"
    if not t["epochs"]:
        _stage(4, "fine-tune", "skipped (finetune.epochs: 0): the supernet's weights are deployed as they are")
        return ckpt
    teacher = t["teacher"]
    _stage(4, "fine-tune", f"{t['epochs']} epochs of the searched subnet"
           + (f", taught by {Path(teacher).name}" if isinstance(teacher, str)
              else f", taught by the ensemble of {' and '.join(Path(f).name for f in teacher)}"
              if isinstance(teacher, list) else ", taught by the supernet's largest subnet" if teacher else ""))
    ledger, f = _shared_inputs(cfg, ledger, ckpt=ckpt)
    taught_by_files = isinstance(teacher, (str, list))
    settings = {**t, "teacher": "file"} if taught_by_files else dict(t)
    if settings["distill_alpha"] == FINETUNE_DEFAULTS["distill_alpha"]:
        del settings["distill_alpha"]  # the default: the digest that runs made before the key existed recorded
    inputs = {"checkpoint": f["checkpoint"], "searched arch": digest_files(searched["arch_file"]),
              "search": ledger.fingerprint("search"), "data": f["data"],
              "fine-tune settings": digest_settings(settings)}
    if isinstance(teacher, str):  # its content, not where it lies: a retrained teacher reruns the fine-tune
        inputs["teacher"] = digest_files(teacher)
    elif taught_by_files:  # an ensemble: its members' content, in any order
        from mcuformer.train.teacher import teacher_fingerprint
        inputs["teacher"] = teacher_fingerprint(teacher)
    done = (out / "checkpoint.pt").exists() and load_checkpoint(out / "checkpoint.pt")["epoch"] >= t["epochs"]
    plan = ledger.plan("finetune", inputs, done=done, owned=[out], resumable=True,
                       state="continuing its checkpoint")
    _say(plan)
    if plan.run:
        donor = reusable_finetune(donors, searched["arch"], inputs, t["epochs"])
        if donor is not None:
            from tqdm import tqdm
            tqdm.write(f"fine-tune: {donor} fine-tuned the same subnet from the same supernet, data and settings: "
                       "its checkpoint is copied, not trained again")
            copy_folder(donor / "finetune", out)
            ledger.records["finetune"]["reused_from"] = donor.name
        else:
            train_cfg = TrainConfig.from_dict(finetune_settings(load_checkpoint(ckpt).get("config"),
                                                                epochs=t["epochs"], workers=1,
                                                                distill_alpha=t["distill_alpha"]),
                                              where="fine-tune settings")
            summary = finetune_subnet(ckpt, searched["arch_file"], out, train_cfg, data_path=cfg.data_path,
                                      teacher=t["teacher"], resume=(out / "checkpoint.pt").exists(),
                                      progress=progress)
            if summary["interrupted"]:
                return None
        ledger.finish("finetune")
    return out / "checkpoint.pt"


def reusable_finetune(donors, arch: dict, inputs: dict, epochs: int) -> Path | None:
    """The first of ``donors`` (run folders) that finished fine-tuning ``arch`` from the same supernet, data
    and settings (``inputs``: this run's fine-tune inputs). Fine-tuning does not depend on the board, and it
    is seeded (the stage-10 F746 and F427 runs gave the same weights), so when two boards' searches pick the
    same subnet the second copies the first one's weights. A donor counts only if its record says its fine-tune
    finished on the arch file its search holds now, and its checkpoint loads and reached ``epochs``; any doubt
    and the subnet is trained here."""
    from mcuformer.stages import StageLedger, digest_files
    from mcuformer.train import load_checkpoint

    for donor in map(Path, donors):
        arch_file, ckpt = donor / "search" / "best_arch.yaml", donor / "finetune" / "checkpoint.pt"
        if not (arch_file.is_file() and ckpt.is_file()):
            continue
        try:
            record = StageLedger(donor).records.get("finetune")
            if not (record and record["complete"]
                    and all(record["inputs"].get(k) == inputs[k] for k in ("checkpoint", "fine-tune settings", "data"))
                    and record["inputs"].get("searched arch") == digest_files(arch_file)):
                continue
            searched = read_structured(arch_file)
            if (isinstance(searched, dict) and searched.get("arch") == arch
                    and load_checkpoint(ckpt).get("epoch", 0) >= epochs):
                return donor
        except McuformerError:  # an unreadable donor is no donor
            continue
    return None


def copy_folder(src: Path, dest: Path) -> None:
    """Copy a folder in place of ``dest`` (the stage's own output), through a temporary sibling."""
    import shutil

    tmp = dest.with_name(dest.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def quantize_stage(cfg: PipelineConfig, ckpt: Path, searched: dict, progress: bool, ledger=None) -> dict:
    """5. int8 post-training quantisation of the searched subnet (from ``ckpt``: the supernet, or the
    fine-tuned subnet), and its int8 top-1 on the test split"""
    from mcuformer.quantize.workflow import evaluate_quantized, quantize_checkpoint
    from mcuformer.stages import code_digest, digest_files, digest_settings
    from mcuformer.utils.io import read_structured

    qdir, report = cfg.output / "int8", cfg.output / "int8" / "accuracy.json"
    q = cfg.quantize
    method = q["method"] + (f" {q['percentile']:g}" if q["method"] == "percentile" else "")
    _stage(5, "quantize", f"int8, {q['calibration_images']} calibration images ({method}), then the test split")
    ledger, f = _shared_inputs(cfg, ledger)
    inputs = {"checkpoint": digest_files(ckpt), "searched arch": digest_files(searched["arch_file"]),
              "search": ledger.fingerprint("search"),
              "fine-tune": ledger.fingerprint("finetune") if Path(ckpt) == cfg.output / "finetune" / "checkpoint.pt"
              else "none",
              "quantize settings": digest_settings(q), "data": f["data"], "code": code_digest("quantize", "data")}
    plan = ledger.plan("quantize", inputs, done=(qdir / "manifest.json").exists() and report.exists(), owned=[qdir])
    _say(plan)
    if plan.run:
        quantize_checkpoint(ckpt, searched["arch_file"], qdir, data_path=cfg.data_path,
                            num_images=q["calibration_images"], method=q["method"], percentile=q["percentile"])
        acc = evaluate_quantized(qdir, checkpoint=ckpt, data_path=cfg.data_path, limit=q["test_limit"],
                                 progress=progress)
        write_json(report, acc)
        ledger.finish("quantize")
    return read_structured(report)


def engine_stage(cfg: PipelineConfig, board, progress: bool, ledger=None) -> dict:
    """6-8. the C engine for the board; bit-exact on the host (ASan/UBSan) and on the emulated core of the
    board (QEMU: the Cortex-M7 of mps2-an500 or the Cortex-M4 of mps2-an386)"""
    import shutil

    from mcuformer.codegen.export import export_model
    from mcuformer.memory import memory_report
    from mcuformer.memory.plot import plot_profile
    from mcuformer.quantize.model import SAVED_FILES, QuantModel
    from mcuformer.stages import code_digest, digest_files, digest_settings
    from mcuformer.space import Arch
    from mcuformer.verify.engine import CPU_NAMES, QEMU_MACHINES, check_emulator_images

    qdir, cdir, report = cfg.output / "int8", cfg.output / "engine", cfg.output / "verify.json"
    _stage(6, "export", f"C engine for {board.name} -> {cdir}")
    ledger, f = _shared_inputs(cfg, ledger, board=board)
    inputs = {"int8 model": digest_files(*(qdir / name for name in SAVED_FILES)),
              "quantize": ledger.fingerprint("quantize"), "board": f["board"],
              "code": code_digest("codegen", "memory")}
    plan = ledger.plan("export", inputs, done=(cdir / "export.json").exists(), owned=[cdir, cfg.output / "memory.png"])
    _say(plan)
    if plan.run:
        export_model(qdir, cdir, board, force=True)  # the pipeline's own folder
        rep = memory_report(QuantModel.load(qdir).arch, board, allow_external_flash=cfg.allow_external_flash)
        plot_profile(rep, cfg.output / "memory.png")
        ledger.finish("export")
    info = read_structured(cdir / "export.json")
    n = cfg.verify["images"]
    emulate = bool(cfg.verify["emulator"] and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
    core = f"{CPU_NAMES[board.cpu]} ({QEMU_MACHINES[board.cpu]})"
    if emulate:  # too many images for the emulator fail now, not after the host builds
        check_emulator_images(n, Arch.from_dict(info["arch"]), "pipeline verify.images", "verify.emulator: false")
    # the sources export wrote, not what verify adds to build them (engine/build/, engine/verify/)
    engine_files = sorted(p for p in cdir.rglob("*")
                          if p.is_file() and not {"build", "verify"} & set(p.relative_to(cdir).parts))
    inputs = {"export": ledger.fingerprint("export"), "engine": digest_files(*engine_files), "data": f["data"],
              "verify settings": digest_settings({**cfg.verify, "emulator": emulate}),
              "code": code_digest("verify", "quantize")}
    _stage(7, "verify on the host", f"{n} test images, gcc and gcc + ASan/UBSan, against the integer reference")
    plan = ledger.plan("verify", inputs, done=report.exists(), owned=[report])
    _say(plan)
    if plan.run:
        from mcuformer.verify import verify
        checked = {"host": verify(cdir, "host", images=n, data_path=cfg.data_path).to_dict()}
        if emulate:
            _stage(8, f"verify on the {core}", f"{n} test images in qemu-system-arm")
            checked["emulator"] = verify(cdir, "cortex-m", images=n, data_path=cfg.data_path).to_dict()
        write_json(report, checked)
        ledger.finish("verify")
    elif emulate:
        _stage(8, f"verify on the {core}", f"{n} test images in qemu-system-arm")
    out = {"export": info, **read_structured(report)}
    if not emulate:
        _stage(8, "verify on the emulated Cortex-M", "skipped: qemu-system-arm / arm-none-eabi-gcc not installed "
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


def _stage(number: int, title: str, detail: str) -> None:
    from tqdm import tqdm
    tqdm.write(f"\n== {number}/{STAGES} {title}: {detail}")


def measured_flash(emu: dict, kb) -> str:
    """The linked model's flash against the internal flash, the external part apart (it has no such budget)."""
    external = emu.get("external_flash_bytes") or 0
    total = f"{kb(emu['model_flash_bytes'])} KB"
    if not external:
        return f"{total} (of {kb(emu['board_flash_bytes'])} KB)"
    internal = emu["model_flash_bytes"] - external
    return (f"{total} = internal {kb(internal)} (of {kb(emu['board_flash_bytes'])} KB) "
            f"+ external {kb(external)}")


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
        host, emu = e["host"], e.get("emulator")
        budget = result.get("budget") or e["export"]["board"]
        ext = " + external flash" if result.get("allow_external_flash") else ""
        tuned = " (fine-tuned)" if result.get("deployed_checkpoint") not in (None, result.get("checkpoint")) else ""
        lines += ["", f"searched model for {result['board']}: {s['summary']}",
                  f"{'float top-1' + tuned:<30}{q['float_top1']:.2f}%  ({q['count']:,} test images; "
                  f"held-out {s['heldout_top1']:.2f}%)",
                  f"{'int8 top-1':<30}{q['int8_top1']:.2f}%  (the engine's integers; agreement "
                  f"{q['agreement']:.2f}%)",
                  f"{'SRAM planned':<30}{kb(e['export']['arena_bytes'])} KB arena "
                  f"(budget {kb(budget['arena_budget_bytes'])} KB)",
                  f"{'flash planned':<30}{kb(e['export']['planned_flash_bytes'])} KB "
                  f"(budget {kb(budget['flash_bytes'])} KB{ext})"]
        if emu:
            core = emu.get("target", "emulator")
            lines += [f"{'SRAM measured (' + core + ')':<30}{kb(emu['ram_bytes'])} KB = static "
                      f"{kb(emu['static_ram_bytes'])} + stack {kb(emu['stack_bytes'])} "
                      f"(of {kb(emu['board_sram_bytes'])} KB)"
                      + ("; the stack is FULL and may have overflowed" if emu.get("stack_overflowed") else ""),
                      f"{'flash measured (' + core + ')':<30}{measured_flash(emu, kb)}",
                      f"{'instructions/inference':<30}{emu['instructions_per_inference']:,.0f} "
                      f"({emu['instructions_per_mac']:.2f} per MAC, QEMU -icount)"]
        for name, v in (("host (ASan+UBSan)", host), (f"{emu.get('target', '')} (QEMU)" if emu else "", emu)):
            if v:
                lines.append(f"{'bit-exact ' + name:<30}{'yes' if v['bit_exact'] else 'NO'} on {v['images']} "
                             f"{v['image_source']}; guard damage {v['guard_damage']}")
    zoo = result.get("zoo_model")
    if zoo:
        tuned = f", fine-tuned {zoo['fine_tuned_epochs']} epochs" if zoo["fine_tuned_epochs"] else ""
        core = f" and {zoo['emulated_core']}" if zoo["emulated_core"] else ""
        lines += ["", f"better ready model for {result['board']} from this supernet{tuned}: {zoo['folder']}",
                  f"{'int8 top-1':<30}{zoo['int8_top1']:.2f}%  ({zoo['summary']})",
                  f"{'RAM, flash measured':<30}{kb(zoo['ram_bytes'])} KB, {kb(zoo['flash_bytes'])} KB; "
                  f"bit-exact on the host{core}"]
    if "seconds" in result:
        ran = ", ".join(f"{k} {v:.0f} s" for k, v in result.get("stage_seconds", {}).items())
        lines.append(f"wall time {result['seconds']:.0f} s" + (f" (stages run: {ran})" if ran else
                                                             " (every stage kept from the last run)"))
    lines.append("plots: " + ", ".join(result.get("plots", [result["curves"]])))
    return "\n".join(lines)
