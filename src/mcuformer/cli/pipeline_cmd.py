"""mcuformer pipeline: the whole job on a dataset and a board, stage after stage, resumable."""

from __future__ import annotations

NAME = "pipeline"
HELP = (
    "run the whole pipeline (train, evaluate, search, quantize, export, verify) from a pipeline YAML; a rerun "
    "resumes and redoes only the stages whose inputs changed")


def add_arguments(p):
    from mcuformer.cli.common import positive_int
    p.add_argument("--config", default=None,
                   help="pipeline YAML (default: configs/pipeline-cifar10.yaml of this checkout)")
    p.add_argument("--gpu", action="store_true", help="take the config's GPU-sized gpu: section")
    p.add_argument("--epochs", type=positive_int, default=None, help="override the training epochs")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from mcuformer.data.paths import repo_root
    from mcuformer.errors import ConfigError
    from mcuformer.pipeline import PipelineConfig, format_summary, run_pipeline

    path = args.config
    if path is None:
        root = repo_root()
        if root is None:
            raise ConfigError("no --config given and no source checkout to take configs/pipeline-cifar10.yaml from")
        path = root / "configs" / "pipeline-cifar10.yaml"
    result = run_pipeline(PipelineConfig.load(path, gpu=args.gpu), epochs=args.epochs,
                          progress=not args.no_progress)
    if result.get("interrupted"):
        print(f"interrupted: rerun the same command to continue ({result['checkpoint']})")
        return 130
    print()
    print(format_summary(result))
    return 0
