"""mcuformer pipeline: the whole job on a dataset and a board, stage after stage, resumable."""

from __future__ import annotations

NAME = "pipeline"
HELP = (
    "run the whole pipeline from a pipeline YAML: start from the zoo supernet (or train one: --train), evaluate, "
    "search, (fine-tune,) quantize, export, verify; a rerun resumes and redoes only the stages whose inputs changed")


def add_arguments(p):
    from mcuformer.cli.common import add_progress_argument, positive_int
    p.add_argument("--config", default=None,
                   help="pipeline YAML (default: configs/pipeline-cifar10.yaml of this checkout)")
    p.add_argument("--train", action="store_true",
                   help="train the supernet from scratch (the config's space and train_config) instead of starting "
                        "from the one its 'supernet:' names")
    p.add_argument("--gpu", action="store_true", help="train with the config's GPU-sized gpu: section")
    p.add_argument("--board", default=None, help="the board to search and build for (default: the config's)")
    p.add_argument("--output", default=None, help="the run folder (default: the config's)")
    p.add_argument("--epochs", type=positive_int, default=None, help="override the training epochs")
    add_progress_argument(p)


def run(args) -> int:
    from mcuformer.data.paths import repo_root
    from mcuformer.errors import ConfigError
    from mcuformer.pipeline import PipelineConfig, format_summary, run_pipeline

    if args.gpu:
        import torch
        if not torch.cuda.is_available():  # else the GPU-sized recipe would train for hours on the CPU
            raise ConfigError("--gpu: no CUDA GPU is available here; without --gpu the pipeline uses the "
                              "CPU-sized recipe")
    path = args.config
    if path is None:
        root = repo_root()
        if root is None:
            raise ConfigError("no --config given and no source checkout to take configs/pipeline-cifar10.yaml from")
        path = root / "configs" / "pipeline-cifar10.yaml"
    cfg = PipelineConfig.load(path, gpu=args.gpu, train=args.train, board=args.board, output=args.output)
    if args.epochs is not None and cfg.supernet is not None:
        raise ConfigError("--epochs sets the training of --train; this config starts from a trained supernet")
    result = run_pipeline(cfg, epochs=args.epochs, progress=not args.no_progress)
    if result.get("interrupted"):
        print(f"interrupted: rerun the same command to continue ({result['checkpoint']})")
        return 130
    print()
    print(format_summary(result))
    return 0
