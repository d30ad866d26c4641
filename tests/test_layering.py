"""Imports go one way, down the pipeline: a stage may import the stages before it, never those after it
(no circles such as api <-> quantize.workflow). Lazy imports inside functions count too."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mcuformer"

# Each top-level module or package of mcuformer and its rank: imports must go to a lower rank.
RANK = {
    "__init__": 0, "errors": 0,
    "utils": 1,
    "space": 2, "data": 2, "stages": 2,
    "supernet": 3, "memory": 3,
    "train": 4,
    "search": 5, "quantize": 5,
    "codegen": 6,
    "verify": 7,
    "api": 8,
    "pipeline": 9,
    "cli": 10,
    "__main__": 11,
}


def imported_parts(path: Path) -> set[str]:
    """The top-level mcuformer parts a file imports ('__init__' for ``from mcuformer import x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "mcuformer":
                out.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            out |= {n.name.split(".")[1] for n in node.names if n.name.startswith("mcuformer.")}
    return out


def test_every_part_of_the_package_has_a_rank():
    parts = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts == set(RANK)


def test_imports_go_down_the_pipeline():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        part = path.relative_to(SRC).parts[0].removesuffix(".py")
        for target in imported_parts(path) - {part}:
            if RANK[target] >= RANK[part]:
                upward.append(f"{path.relative_to(SRC)} imports mcuformer.{target}")
    assert upward == []


def test_the_scan_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from mcuformer.api import evaluate_checkpoint\n    import mcuformer.cli.main\n")
    assert imported_parts(module) == {"api", "cli"}
