"""The official MCUFormer/AutoFormer command lines, accepted by the mcuformer verbs.

``supernet_train.py`` maps to ``mcuformer train``, ``evolution.py`` to ``mcuformer search`` and
``lib/subImageNet.py`` to ``mcuformer sub-split``. Every official flag of those scripts is parsed. Each
one is either mapped onto the mcuformer setting that does the same thing, accepted with a one-line note
when mcuformer already behaves that way (or the flag has no effect here), or refused with one line that
names the mcuformer equivalent. A verb calls ``add_official_flags`` at the end of ``add_arguments`` and
``apply_official_flags`` first thing in ``run``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from mcuformer.errors import ConfigError

PREFIX = "official__"
BOARDS = ("stm32f746", "stm32f427", "stm32h743")


@dataclass(frozen=True)
class Flag:
    """One official flag. ``arity``: 0 (a switch), 1 (one value) or '+' (a list)."""

    name: str
    arity: object = 1
    # what to do: "map" (set args.<target>), "note" (accept, print why it changes nothing),
    # "same" (accept only values equal to ``ok``: mcuformer's fixed behaviour), "refuse", or "custom"
    do: str = "note"
    target: str | None = None
    cast: object = str
    ok: tuple = ()
    why: str = ""


def _f(name, arity=1, do="note", target=None, cast=str, ok=(), why=""):
    return Flag(name, arity, do, target, cast, ok, why)


# flags that both scripts share (timm/DeiT training options; evolution.py parses them too)
_COMMON = [
    _f("--cfg", do="custom"), _f("--cfg-new", do="custom"),
    _f("--platform", why="cluster platform selection does not apply"),
    _f("--teacher_model", do="same", ok=("",),
       why="supernet training distils in place only (--distill inplace); an outside teacher (or an ensemble) "
           "teaches a fine-tune: mcuformer finetune --teacher"),
    _f("--relative_position", 0, do="custom"),
    _f("--max_relative_position", do="custom", cast=int),
    _f("--gp", 0, why="the official spaces pool by global average (pool: gap), the mcuformer default"),
    _f("--change_qkv", 0, why="mcuformer always sizes q/k/v as heads x head_dim (head_dim 64), as --change_qkv does"),
    _f("--model", why="the architecture comes from --cfg/--space"),
    _f("--input-size", do="custom", cast=int),
    _f("--drop", do="same", cast=float, ok=(0.0,), why="mcuformer has no dropout; use --drop-path"),
    _f("--drop-block", do="same", cast=float, ok=(None,), why="DropBlock is for CNNs; use --drop-path"),
    _f("--model-ema", 0, do="refuse", why="no weight EMA in mcuformer"),
    _f("--no-model-ema", 0, why="mcuformer keeps no weight EMA"),
    _f("--model-ema-decay", why="mcuformer keeps no weight EMA"),
    _f("--model-ema-force-cpu", 0, why="mcuformer keeps no weight EMA"),
    _f("--rpe_type", do="same", ok=("bias",), why="only the official default 'bias' form exists"),
    _f("--post_norm", 0, do="refuse", why="mcuformer blocks are pre-norm, as the official default"),
    _f("--no_abs_pos", 0, do="refuse", why="mcuformer always adds the absolute position embedding"),
    _f("--opt", do="same", ok=("adamw",), why="mcuformer trains with AdamW only"),
    _f("--opt-eps", do="same", cast=float, ok=(1e-8,), why="AdamW eps is fixed at 1e-8"),
    _f("--opt-betas", "+", do="same", cast=float, ok=(None,), why="AdamW betas are fixed at the PyTorch default"),
    _f("--clip-grad", do="map", target="grad_clip", cast=float),
    _f("--momentum", cast=float, why="momentum applies to SGD; mcuformer uses AdamW"),
    _f("--sched", do="same", ok=("cosine",), why="mcuformer's schedule is warm-up + cosine"),
    _f("--lr-noise", "+", do="same", cast=float, ok=(None,), why="no learning-rate noise in mcuformer"),
    _f("--lr-noise-pct", cast=float, why="no learning-rate noise in mcuformer"),
    _f("--lr-noise-std", cast=float, why="no learning-rate noise in mcuformer"),
    _f("--warmup-lr", do="same", cast=float, ok=(1e-6,), why="set warmup_lr in a --config YAML"),
    _f("--lr-power", cast=float, why="only used by polynomial schedules"),
    _f("--decay-epochs", cast=float, why="only used by step schedules; mcuformer's is cosine"),
    _f("--cooldown-epochs", cast=int, why="the cosine schedule has no cool-down; --epochs is the whole run"),
    _f("--patience-epochs", cast=int, why="only used by plateau schedules"),
    _f("--decay-rate", cast=float, why="only used by step schedules"),
    _f("--dr", cast=float, why="only used by step schedules"),
    _f("--color-jitter", cast=float, why="timm ignores colour jitter when RandAugment is on, as here"),
    _f("--aa", do="custom"),
    _f("--smoothing", do="map", target="label_smoothing", cast=float),
    _f("--train-interpolation", why="mcuformer resizes with antialiased bilinear interpolation"),
    _f("--repeated-aug", 0, why="mcuformer samples each image once per epoch"),
    _f("--no-repeated-aug", 0, why="mcuformer samples each image once per epoch"),
    _f("--reprob", do="map", target="random_erasing", cast=float),
    _f("--remode", do="same", ok=("pixel",), why="random erasing fills with per-pixel noise only"),
    _f("--recount", do="same", cast=int, ok=(1,), why="random erasing erases one box"),
    _f("--resplit", 0, do="refuse", why="no split-batch random erasing in mcuformer"),
    _f("--cutmix-minmax", "+", do="same", cast=float, ok=(None,), why="CutMix boxes follow Beta(--cutmix)"),
    _f("--mixup-prob", do="same", cast=float, ok=(1.0,), why="mixup/CutMix apply to every batch"),
    _f("--mixup-switch-prob", do="same", cast=float, ok=(0.5,),
       why="set augment.mixup_switch_prob in a --config YAML"),
    _f("--mixup-mode", do="same", ok=("batch",), why="mixup mixes whole batches"),
    _f("--data-set", do="custom"),
    _f("--inat-category", why="iNaturalist is not supported; any ImageFolder works with --data-path"),
    _f("--output_dir", do="map", target="output"),
    _f("--start_epoch", do="same", cast=int, ok=(0,), why="--resume continues at the saved epoch"),
    _f("--eval", 0, do="refuse", why="evaluate a supernet with `mcuformer evaluate`"),
    _f("--num_workers", do="map", target="workers", cast=int),
    _f("--dist-eval", 0, why="under torchrun mcuformer always evaluates on all ranks"),
    _f("--pin-mem", 0, why="mcuformer pins host memory when training on a GPU"),
    _f("--no-pin-mem", 0, why="mcuformer pins host memory when training on a GPU"),
    _f("--world_size", cast=int, why="torchrun sets the world size"),
    _f("--dist_url", why="torchrun sets the rendezvous"),
    _f("--no-amp", 0, do="custom"),
]

_TRAIN = _COMMON + [
    _f("--mode", do="same", ok=("super",), why="retraining a fixed subnet is not implemented; mcuformer train "
                                               "trains the supernet"),
    _f("--super_epoch", cast=int, why="search-space evolution is `mcuformer evolve-space --epochs N "
                                      "--rounds K`; train trains the one supernet of --cfg-new"),
    _f("--step-num", cast=int, why="search-space evolution is `mcuformer evolve-space --rounds K`"),
    _f("--sample-num", cast=int, why="search-space evolution scores points with `mcuformer evolve-space --samples N`"),
    _f("--load-pretrained-model", 0,
       why="pass --init-from CKPT (e.g. AutoFormer's supernet-tiny.pth) to start from pretrained weights"),
]

_SEARCH = _COMMON + [
    _f("--max-epochs", do="map", target="generations", cast=int),
    _f("--select-num", do="map", target="parents", cast=int),
    _f("--population-num", do="map", target="population", cast=int),
    _f("--m_prob", do="map", target="m_prob", cast=float),
    _f("--s_prob", do="map", target="s_prob", cast=float),
    _f("--crossover-num", do="map", target="crossovers", cast=int),
    _f("--mutation-num", do="map", target="mutations", cast=int),
    _f("--epochs", cast=int, why="the official search does not use it"),
    _f("--lr", cast=float, why="the search does not train"),
    _f("--min-lr", cast=float, why="the search does not train"),
    _f("--warmup-epochs", cast=int, why="the search does not train"),
    _f("--weight-decay", cast=float, why="the search does not train"),
    _f("--drop-path", cast=float, why="the search does not train"),
    _f("--mixup", cast=float, why="the search does not train"),
    _f("--cutmix", cast=float, why="the search does not train"),
    _f("--param-limits", do="same", cast=float, ok=(23.0,),
       why="mcuformer constrains SRAM and flash, not parameters: use --board, --sram-kb, --flash-kb"),
    _f("--min-param-limits", do="same", cast=float, ok=(18.0,),
       why="mcuformer constrains SRAM and flash, not parameters: use --board, --sram-kb, --flash-kb"),
    _f("--memory-constraint", do="custom"),
    _f("--scale", 0, do="refuse", why="mcuformer does not rescale sampled layers"),
    _f("--patch_size", cast=int, why="the patch-size choices come from the checkpoint's space"),
    _f("--no-prefetcher", 0, why="mcuformer preloads the held-out images"),
]

_SUBSPLIT = []  # --data-path is ours already; --per-class and --output get the official defaults

OFFICIAL_FLAGS = {"train": _TRAIN, "search": _SEARCH, "sub-split": _SUBSPLIT}


def _dest(name: str) -> str:
    return PREFIX + name.lstrip("-").replace("-", "_")


def _option_strings(p: argparse.ArgumentParser) -> set:
    return {s for a in p._actions for s in a.option_strings}


def add_official_flags(p: argparse.ArgumentParser, verb: str) -> None:
    """Register the official flags of ``verb`` that mcuformer does not already spell the same way."""
    ours = _option_strings(p)
    for flag in OFFICIAL_FLAGS[verb]:
        if flag.name in ours:
            continue
        kw = {"dest": _dest(flag.name), "default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
        if flag.arity == 0:
            kw.update(action="store_const", const=True)
        else:
            kw.update(nargs=None if flag.arity == 1 else "+", metavar="X")
        p.add_argument(flag.name, **kw)
    # official spellings that clash with ours: --resume takes a path there, --amp is a switch there
    groups = (p, p._optionals)  # argparse checks conflicts in the group an option is added to
    for g in groups:
        g.conflict_handler = "resolve"
    if "--resume" in ours:
        helps = {"train": "continue the checkpoint in --output exactly",
                 "search": "continue the search whose state.json is in --output"}
        p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                       help=helps.get(verb, "continue") + " (an official-style path is accepted too)")
    if "--amp" in ours:
        default = next(a.default for a in p._actions if "--amp" in a.option_strings)
        p.add_argument("--amp", nargs="?", const="auto", default=default, choices=["auto", "bf16", "fp16", "off"])
    for g in groups:
        g.conflict_handler = "error"
    for a in p._actions:  # the official scripts give these another way (--cfg, --resume, --output_dir)
        if a.dest in ("space", "checkpoint", "output", "per_class"):
            a.required = False
    if verb == "search":  # the README's evolution command carries a stray path after --output_dir
        p.add_argument(_dest("stray"), nargs="*", default=[], help=argparse.SUPPRESS)


def _note(verb: str, text: str) -> None:
    print(f"mcuformer {verb}: note: {text}", file=sys.stderr)


def _given(args) -> dict:
    return {k[len(PREFIX):]: v for k, v in vars(args).items() if k.startswith(PREFIX)}


def apply_official_flags(args, verb: str) -> None:
    """Map the official flags the user gave onto ``args``; raise ConfigError for refused ones."""
    given = _given(args)
    table = {_dest(f.name)[len(PREFIX):]: f for f in OFFICIAL_FLAGS[verb]}
    for key, raw in given.items():
        if key == "stray":
            continue
        flag = table[key]
        value = _cast(flag, raw)
        if flag.do == "map" and not hasattr(args, flag.target):
            _note(verb, f"{flag.name} accepted, no effect: {verb} does not use it")
        elif flag.do == "map":
            setattr(args, flag.target, value)
        elif flag.do == "note":
            _note(verb, f"{flag.name} accepted, no effect: {flag.why}")
        elif flag.do == "same":
            if not any(_equal(value, ok) for ok in flag.ok):
                raise ConfigError(f"{flag.name} {raw if not isinstance(raw, list) else ' '.join(raw)}: "
                                  f"not supported; {flag.why}")
        elif flag.do == "refuse":
            raise ConfigError(f"{flag.name} is not supported: {flag.why}")
    _apply_custom(args, verb, given)
    _check_required(args, verb)


def _cast(flag: Flag, raw):
    if flag.arity == 0:
        return True
    try:
        return [flag.cast(x) for x in raw] if isinstance(raw, list) else flag.cast(raw)
    except ValueError:
        raise ConfigError(f"{flag.name}: {raw!r} is not a valid {flag.cast.__name__}") from None


def _equal(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
        except (TypeError, ValueError):
            return False
    return a == b


def _apply_custom(args, verb: str, given: dict) -> None:
    # --cfg [+ --cfg-new] is the official pair of space files
    if "cfg" in given or "cfg_new" in given:
        files = [given[k] for k in ("cfg", "cfg_new") if k in given]
        if verb == "search":
            _note(verb, "--cfg/--cfg-new accepted: the search takes its space from the checkpoint")
        elif getattr(args, "space", None):
            raise ConfigError("--cfg/--cfg-new and --space both given; keep one")
        else:
            args.space = files
    clip = _cast(Flag("--max_relative_position", cast=int), given.get("max_relative_position", 14))
    if clip <= 0:
        raise ConfigError(f"--max_relative_position {clip}: the clipping distance must be positive")
    if "relative_position" in given and verb == "train":
        args.official_rel_pos = clip  # the space gains 2-D relative position tables (official_space)
    elif "relative_position" in given:
        _note(verb, "--relative_position accepted: whether attention has relative position tables comes from "
                    "the checkpoint's space (rel_pos)")
    elif "max_relative_position" in given:
        _note(verb, "--max_relative_position accepted, no effect without --relative_position")
    if "input_size" in given:
        size = _cast(Flag("--input-size", cast=int), given["input_size"])
        if verb == "train" and getattr(args, "space", None):
            from mcuformer.space import SearchSpace
            space = SearchSpace.load(args.space)
            if space.img_size != size:
                raise ConfigError(f"--input-size {size} differs from the space's image size {space.img_size}; "
                                  "set IMG_SIZE under SUPERNET in the --cfg file")
        elif verb == "search":
            _note(verb, f"--input-size {size} accepted: the image size comes from the checkpoint's space")
    if "aa" in given:
        aa = given["aa"]
        if aa in ("", "none", "None"):
            args.no_randaugment = True
        elif not aa.startswith("rand"):
            raise ConfigError(f"--aa {aa}: only RandAugment ('rand-...') or 'none' is supported")
        elif verb == "train":
            _note(verb, f"--aa {aa}: mcuformer's RandAugment uses 2 ops at magnitude 9 (set augment."
                        "randaugment_ops/_magnitude in a --config YAML)")
    if "no_amp" in given:
        args.amp = "off"
    if "data_set" in given:
        ds = given["data_set"]
        if ds in ("INAT", "INAT19"):
            raise ConfigError(f"--data-set {ds}: iNaturalist is not supported; pass any ImageFolder with --data-path")
        if ds == "CIFAR" and getattr(args, "data_path", None) is not None:
            _note(verb, "--data-set CIFAR accepted: the data come from --data-path")
        if ds == "EVO_IMNET":
            if verb != "search":
                raise ConfigError("--data-set EVO_IMNET is the search's held-out split; `mcuformer train "
                                  "--exclude-split FILE` trains without it")
            _use_official_subsplit(args)
    if "memory_constraint" in given:
        _memory_constraint(args, given["memory_constraint"])
    if verb == "search":
        stray = given.get("stray") or []
        if stray and "output_dir" in given:
            _note(verb, f"ignoring stray argument(s) {' '.join(stray)} after --output_dir "
                        "(the official README's evolution command has one)")
        elif stray:
            raise ConfigError(f"unrecognized arguments: {' '.join(stray)}")
    resume = getattr(args, "resume", False)
    if isinstance(resume, str):
        _official_resume(args, verb, resume)
    if verb == "sub-split":
        if args.per_class is None:
            args.per_class = 100  # the official subImageNet's 100 images per class
        if args.output is None:
            args.output = str(official_subsplit_path(args.data_path))
            if Path(args.output).exists():
                raise ConfigError(f"{args.output} exists; pass --output to write the split elsewhere")


def official_space(space, args):
    """The space as the official flags change it: ``--relative_position`` adds 2-D relative position
    tables clipped at ``--max_relative_position`` (14)."""
    clip = getattr(args, "official_rel_pos", 0)
    if clip and space.rel_pos != clip:
        from dataclasses import replace
        space = replace(space, rel_pos=clip)
    return space


def official_subsplit_path(data_path) -> Path:
    """Where the official-style sub-split of a dataset folder lives (like ``<data>/subImageNet``)."""
    if data_path is None or not Path(data_path).is_dir():
        raise ConfigError("--output is required unless --data-path is a dataset folder "
                          "(the split is then written as <data-path>/subImageNet.json)")
    return Path(data_path) / "subImageNet.json"


def _use_official_subsplit(args) -> None:
    if args.subsplit:
        return
    path = official_subsplit_path(args.data_path)
    if not path.exists():
        raise ConfigError(f"--data-set EVO_IMNET: {path} does not exist; make it with "
                          f"`mcuformer sub-split --data-path {args.data_path}`")
    args.subsplit = str(path)


def _memory_constraint(args, value: str) -> None:
    """The README's --memory-constraint (absent from the official code): a board name or SRAM in KB."""
    if value.lower() in BOARDS:
        args.board = value.lower()
        return
    try:
        kb = float(value)
    except ValueError:
        raise ConfigError(f"--memory-constraint {value}: give a board ({', '.join(BOARDS)}) or an SRAM budget "
                          "in KB (mcuformer's --board / --sram-kb)") from None
    if not kb > 0:
        raise ConfigError(f"--memory-constraint {value}: the SRAM budget must be positive")
    args.sram_kb = kb


def _official_resume(args, verb: str, path: str) -> None:
    if verb == "search":  # evolution.py --resume is the supernet checkpoint to search
        if args.checkpoint:
            raise ConfigError("--resume CKPT and --checkpoint both given; keep one")
        args.checkpoint, args.resume = path, False
        return
    out = Path(args.output) if args.output else None
    if out is not None and Path(path).resolve() in (out.resolve(), (out / "checkpoint.pt").resolve()):
        args.resume = True
        return
    raise ConfigError(f"--resume {path}: mcuformer continues the run in --output (its checkpoint.pt) with a bare "
                      "--resume; to start from other weights use --init-from")


def _check_required(args, verb: str) -> None:
    need = {"train": [("space", "--space (or --cfg)"), ("output", "--output (or --output_dir)")],
            "search": [("checkpoint", "--checkpoint (or --resume CKPT)"), ("output", "--output (or --output_dir)")],
            "sub-split": []}[verb]
    missing = [label for attr, label in need if not getattr(args, attr, None)]
    if missing:
        raise ConfigError(f"the following arguments are required: {', '.join(missing)}")
