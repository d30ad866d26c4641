"""The exported Makefile's HOST_CC for the tests that build dozens of random exports: as the Makefile calls
it (``cc FLAGS a.c b.c ... -o program``), except that each kernel-library source (``mcu_*.c``) is compiled
once per preprocessed text and flags into ``$CC_CACHE_DIR``, the way ccache keys objects. The kernels are
the same in every export and are most of the compile time; the model, its weights and the verification
program are compiled every time, and the program is linked with the same flags as the one-command build.
Run as ``python cc_cache.py FLAGS... SOURCES... -o PROGRAM``."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

COMPILER = "cc"


def cached_object(source: str, flags: list[str], cache: Path) -> str:
    # -fno-working-directory: the export's folder (in -g's line markers) must not be part of the key
    pre = subprocess.run([COMPILER, *flags, "-E", "-fno-working-directory", source], capture_output=True, check=True)
    key = hashlib.sha256("\0".join(flags).encode() + b"\0" + pre.stdout).hexdigest()
    obj = cache / f"{Path(source).stem}-{key[:24]}.o"
    if not obj.exists():
        tmp = obj.with_name(f"{obj.name}.{os.getpid()}.tmp")  # two builds may compile the same object at once
        subprocess.run([COMPILER, *flags, "-c", source, "-o", str(tmp)], check=True)
        os.replace(tmp, obj)
    return str(obj)


def main(argv: list[str]) -> int:
    cache = Path(os.environ["CC_CACHE_DIR"])
    cache.mkdir(parents=True, exist_ok=True)
    out = argv.index("-o")
    program, rest = argv[out + 1], argv[:out] + argv[out + 2:]
    flags = [a for a in rest if not a.endswith(".c")]
    sources = [a for a in rest if a.endswith(".c")]
    try:
        inputs = [cached_object(s, flags, cache) if Path(s).name.startswith("mcu_") else s for s in sources]
    except subprocess.CalledProcessError as e:
        sys.stderr.write(e.stderr.decode() if e.stderr else "")
        return e.returncode
    return subprocess.run([COMPILER, *flags, *inputs, "-o", program]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
