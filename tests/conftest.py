import contextlib
import io
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
OFFICIAL = [CONFIGS / "official/supernet-T.yaml", CONFIGS / "official/supernet-T-new.yaml"]

# Under pytest-xdist each worker is one process of its own: one intra-op thread each (and in the processes
# the tests start), so that N workers share N cores instead of oversubscribing them.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Decoded archives go to one cache per test session, never into the checkout. Session-scoped, so that it
    also holds for module fixtures that load data. Under xdist the workers share it (its writes are atomic)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if "PYTEST_XDIST_WORKER" in os.environ else base
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCUFORMER_CACHE", str(shared / "cache"))
        yield


@pytest.fixture
def cached_host_cc(tmp_path_factory, monkeypatch) -> Path:
    """The host builds of this test go through tests/cc_cache.py: the kernel library is compiled once per
    session and set of flags, not once per export. Returns the folder of the cached objects."""
    cache = tmp_path_factory.getbasetemp() / "cc-cache"
    monkeypatch.setenv("CC_CACHE_DIR", str(cache))
    monkeypatch.setenv("HOST_CC", f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'tests/cc_cache.py'))}")
    return cache


@pytest.fixture(scope="session")
def cifar_archive() -> Path:
    from mcuformer.data import default_data_path
    return default_data_path()


def cpu_train_config(**settings):
    """The CPU training recipe (configs/train-cifar10-cpu.yaml) with ``settings`` over it: the tests' quick runs."""
    from mcuformer.train import TrainConfig
    cfg = TrainConfig.load(CONFIGS / "train-cifar10-cpu.yaml")
    for k, v in settings.items():
        setattr(cfg, k, v)
    return cfg


def make_image_folder(root: Path, classes=("cat", "dog"), per_class=6, size=16, splits=("train", "val"),
                      fmt="JPEG") -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                base = np.full((size, size, 3), 60 + 120 * c, np.uint8)
                img = np.clip(base + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:03d}.{'jpg' if fmt == 'JPEG' else 'png'}", fmt)
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data")


def run_cli(*args, timeout=600, env=None, check=False):
    """Run ``python -m mcuformer ...``; returns the CompletedProcess."""
    e = dict(os.environ)
    e.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "mcuformer", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"mcuformer {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def deadline(seconds: int):
    """A blocking read (a named pipe opened by mistake) or a hang becomes a test failure."""
    def expire(signum, frame):
        raise TimeoutError(f"no result within {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_in_process(*args, seconds: int = 60):
    """``mcuformer ARGS`` through the CLI's own ``main`` in this interpreter (one torch import for the
    whole suite): its exit code and what it printed. An exception that escapes ``main`` -- what a user
    would see as a traceback -- fails the test."""
    from mcuformer.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    with deadline(seconds), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    return lines[0]
