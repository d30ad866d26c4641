"""Fingerprints of a pipeline run's stages, so that a rerun notices what changed.

Each stage names its inputs (content hashes of the files it reads, its settings, the board, the data's
identity, the fingerprints of the stages it builds on). ``<run>/stages.json`` keeps, per stage, the
digest of every input and whether the stage finished. A rerun compares: a stage whose inputs are the
same and whose output is there is kept; otherwise it reruns, and says why in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mcuformer.errors import ConfigError
from mcuformer.utils.io import read_structured, write_json

LEDGER_FORMAT = "mcuformer-stages-v1"
_CHUNK = 1 << 20


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def digest_settings(obj) -> str:
    """A digest of settings: equal mappings give equal digests, whatever the key order."""
    return digest_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def digest_files(*paths) -> str:
    """A digest of the content of files (in the given order); a missing file is part of the digest."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        if not p.is_file():
            h.update(b"<missing>\0")
            continue
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:20]


def code_digest(*subpackages: str, root: Path | None = None) -> str:
    """A digest of the source of mcuformer subpackages (every file under each, by its path in the package and
    its content): a stage whose code changed, by an upgrade or an edit, reruns instead of keeping what the old
    code made. Training and fine-tuning do not take it: hours of weights are not redone for an edit."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent
    files = []
    for sub in subpackages:
        if not (root / sub).is_dir():
            raise ValueError(f"no mcuformer subpackage {sub!r}")
        files += sorted(p for p in (root / sub).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return digest_settings([[p.relative_to(root).as_posix(), digest_files(p)] for p in files])


HASHED_ARCHIVE_BYTES = 1 << 30  # archives up to this size are identified by content (CIFAR-10's 19 MB: 0.02 s)


def data_identity(path) -> str:
    """The data's identity: its resolved path and, for an archive up to HASHED_ARCHIVE_BYTES, its content (a
    copy with a new modification time, as a fresh checkout or a restored share makes, is the same data);
    for a larger archive its size and modification time; for a folder, without reading it all, its file
    count, total size and newest modification time."""
    p = Path(path).resolve()
    if p.is_dir():
        count = size = newest = 0
        for root, _dirs, files in os.walk(p):
            for name in files:
                st = os.stat(os.path.join(root, name))
                count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
        return digest_settings([str(p), count, size, newest])
    st = p.stat()
    if st.st_size <= HASHED_ARCHIVE_BYTES:
        return digest_settings([str(p), digest_files(p)])
    return digest_settings([str(p), st.st_size, st.st_mtime_ns])


@dataclass
class Plan:
    """What a stage does on this run: ``run`` it (after removing its old outputs when ``fresh``), or keep it."""
    run: bool
    fresh: bool = False
    line: str | None = None  # the one line that says why it reruns (None on a first run or when kept)


class StageLedger:
    """``stages.json`` of one run folder."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / "stages.json"
        self.records: dict[str, dict] = self._load()
        self.ran: list[str] = []  # the stages that ran (or resumed) in this process
        self.seconds: dict[str, float] = {}  # wall time of each stage that ran and finished in this process
        self._started: dict[str, float] = {}

    def _load(self) -> dict:
        if not self.path.exists():
            return {}
        d = read_structured(self.path)
        ok = (isinstance(d, dict) and d.get("format") == LEDGER_FORMAT and isinstance(d.get("stages"), dict)
              and all(isinstance(r, dict) and isinstance(r.get("inputs"), dict) and isinstance(r.get("complete"), bool)
                      for r in d["stages"].values()))
        if not ok:
            raise ConfigError(f"{self.path} is not a stage record of this mcuformer; delete it to rerun every stage")
        return d["stages"]

    def fingerprint(self, stage: str) -> str | None:
        r = self.records.get(stage)
        return digest_settings(r["inputs"]) if r else None

    def plan(self, stage: str, inputs: dict[str, str], *, done: bool, owned: list, resumable: bool = False,
             state: str = "") -> Plan:
        """Decide whether ``stage`` runs. ``done``: its finished output is there; ``owned``: the files and
        folders the stage writes inside the run folder (removed before a fresh run; nothing else is touched);
        ``state`` says where an interrupted resumable stage stands. When the stage runs, its new inputs are
        recorded (not yet complete) after its old outputs are gone, so a kill in between loses nothing."""
        owned = [Path(p) for p in owned]
        exists = any(p.exists() for p in owned)
        old = self.records.get(stage)
        if old is None:
            plan = Plan(True, fresh=exists, line=(f"rerun {stage}: its outputs have no recorded fingerprint "
                                                  "(an older run folder)") if exists else None)
        elif old["inputs"] != inputs:
            changed = sorted(k for k in inputs.keys() | old["inputs"].keys() if inputs.get(k) != old["inputs"].get(k))
            plan = Plan(True, fresh=True, line=f"rerun {stage}: {', '.join(changed)} changed")
        elif old["complete"] and done:
            return Plan(False)
        elif resumable and exists:
            plan = Plan(True, line=f"resume {stage}: {state or 'interrupted earlier'}")
        else:
            plan = Plan(True, fresh=exists, line=f"rerun {stage}: its output is missing or unfinished")
        if plan.fresh:
            self._remove(owned)
        self.ran.append(stage)
        self._started[stage] = time.perf_counter()
        self.records[stage] = {"inputs": dict(inputs), "complete": False}
        self._save()
        return plan

    def finish(self, stage: str) -> None:
        if stage in self._started:
            self.seconds[stage] = round(time.perf_counter() - self._started.pop(stage), 1)
        self.records[stage]["complete"] = True
        self._save()

    def _remove(self, owned: list[Path]) -> None:
        root = self.path.parent.resolve()
        for p in owned:
            parent = p.parent.resolve()
            if parent != root and root not in parent.parents:  # only the pipeline's own outputs, nothing outside
                raise ValueError(f"{p} is not inside the run folder {root}")
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()

    def _save(self) -> None:
        write_json(self.path, {"format": LEDGER_FORMAT, "stages": self.records})
