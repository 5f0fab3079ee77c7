"""Download every wheel a hash lock names (plus the installer's pip) into one image's wheelhouse.

The wheels are for the image's interpreter and platform (default CPython 3.11, x86_64, glibc 2.36 = Debian
bookworm; ``--python 3.13`` is trixie's, glibc 2.41), whatever the host runs; pip checks each file against
the lock's sha256 before keeping it. The Docker build installs from this folder with ``--no-index``: builds
need no network and take exactly these.

Usage: python scripts/fetch_wheels.py LOCK DEST [--python X.Y]
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.images.versions import BASES, DEFAULT_PYTHON  # noqa: E402  (the one list of bases)

INSTALLER = ROOT / "images" / "installer.txt"


def platforms(glibc: tuple[int, int]) -> list[str]:
    """pip's --platform takes exact tags, so name every manylinux tag that glibc can run."""
    return [f"manylinux_2_{minor}_x86_64" for minor in range(glibc[1], 16, -1)] + [
        "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64",
    ]


PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", re.MULTILINE)


def pins(lock: Path) -> set[str]:
    """``name-version`` prefixes of the wheel files a lock allows (names normalised as in wheel filenames)."""
    return {f"{re.sub(r'[-_.]+', '_', n).lower()}-{v}-" for n, v in PIN.findall(lock.read_text())}


def main(lock: Path, dest: Path, python: str = DEFAULT_PYTHON) -> int:
    base = BASES[python]
    links: list[str] = []
    if re.search(r"^torch==[^\s]*\+cpu", lock.read_text(), re.MULTILINE):
        # PyTorch's CPU build is not on PyPI: this machine keeps it in /opt/wheels, elsewhere PyTorch's index.
        local = glob.glob("/opt/wheels/torch-*+cpu-*.whl")
        links = ["--find-links", "/opt/wheels"] if local else ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if dest.is_dir():  # keep what was fetched before (pip re-checks its hash): a refresh downloads only changes
        for whl in dest.glob("*.whl"):
            os.link(whl, partial / whl.name)
    # PyPI itself, never a mirror, constraint or find-links configured for this host's pip.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    platform_args = [arg for tag in platforms(base.glibc) for arg in ("--platform", tag)]
    for req in (lock, INSTALLER):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--require-hashes", "--only-binary", ":all:", *platform_args, "--python-version", base.python,
             "--implementation", "cp", "--abi", base.cp, "--index-url", "https://pypi.org/simple", *links,
             "-r", str(req), "-d", str(partial)],
            env=env, check=True,
        )
    wanted = pins(lock) | pins(INSTALLER)
    for whl in partial.glob("*.whl"):  # drop wheels an earlier lock needed and this one does not
        if not any(whl.name.lower().startswith(p) for p in wanted):
            whl.unlink()
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    size = sum(f.stat().st_size for f in dest.glob("*.whl"))
    print(f"wheelhouse {dest}: {len(list(dest.glob('*.whl')))} wheels, {size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    python = DEFAULT_PYTHON
    if len(argv) == 4 and argv[2] == "--python" and argv[3] in BASES:
        python, argv = argv[3], argv[:2]
    if len(argv) != 2:
        sys.exit(__doc__ + f"\n--python is one of: {', '.join(BASES)}")
    sys.exit(main(Path(argv[0]), Path(argv[1]), python))
