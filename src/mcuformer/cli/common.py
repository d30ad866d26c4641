"""Arguments shared by several verbs."""

from __future__ import annotations

import argparse

from mcuformer.utils.checks import (any_int, device_name, nonnegative_float, nonnegative_int, positive_float,  # noqa: F401
                                    number_type, positive_int, probability)


def add_space_argument(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--space", nargs="+", required=required, metavar="YAML",
                   help="search space: one mcuformer file, or the official supernet-T.yaml [+ supernet-T-new.yaml]")


def add_progress_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def add_force_argument(p: argparse.ArgumentParser, what: str = "existing output files") -> None:
    p.add_argument("--force", action="store_true", help=f"overwrite {what}")
