"""Arguments shared by several verbs."""

from __future__ import annotations

import argparse


def add_space_argument(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--space", nargs="+", required=required, metavar="YAML",
                   help="search space: one mcuformer file, or the official supernet-T.yaml [+ supernet-T-new.yaml]")

