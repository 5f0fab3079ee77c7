"""What the image tests check, as plain functions: the locks, compose.yaml and the files a CUDA lock names.

``tests/test_images.py`` (the CPU images and the CUDA locks of the GPU frameworks) and ``tests/test_gpu.py``
(the GPU-only services) both use them; no test function lives here, so importing this module collects nothing.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from solvers import registry
from tests.conftest import ROOT

#: What every image's lock pins besides its framework: the solver core.
CORE = ("numpy", "jsonschema", "threadpoolctl", "nvidia-ml-py")


def lock_path(framework: str, flavour: str) -> Path:
    return ROOT / "images" / framework / f"requirements-{flavour}.txt"


def pins(lock: Path) -> dict[str, str]:
    """name → version of every requirement in a lock."""
    return {m[1].lower(): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;\\]+)",
                                                     lock.read_text(), re.MULTILINE)}


def framework_pin(framework: str, flavour: str, lock: Path | None = None) -> str:
    locked = pins(lock or lock_path(framework, flavour))
    return next(locked[d] for d in registry.REGISTRY[framework].dists if d in locked)


def added_services() -> set[str]:
    """Versions declared with ``gdbench images add``: services that build from a lock of their own."""
    return {s.name for s in compose().services.values() if s.args.get("LOCK")}


@cache
def compose() -> Any:
    from orchestrator.images.compose import load_compose

    return load_compose(ROOT / "compose.yaml", env={})


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def check_lock(framework: str, flavour: str) -> None:
    """Every requirement exact and hashed, the solver core included, and a header saying why that version."""
    lock = lock_path(framework, flavour)
    text = lock.read_text()
    header = re.match(r"(#[^\n]*\n)+", text)
    assert header and "make locks" in header.group(0) and len(header.group(0).splitlines()) >= 4, \
        "lock header: why this version and how to refresh"
    reqs = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if re.match(r"[A-Za-z0-9]", b)]
    assert reqs, f"{lock} pins nothing"
    for block in reqs:
        assert re.match(r"^[A-Za-z0-9_.-]+(\[[^\]]*\])?==\S+", block), f"not an exact pin: {block.splitlines()[0]}"
        assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"
    pinned = pins(lock)
    for dist in CORE:
        assert dist in pinned, f"{lock.name} of {framework} lacks the solver core's {dist}"
    assert framework_pin(framework, flavour)
    # The .in file is the lock's source: every top-level requirement it names is pinned in the lock.
    src = lock.with_suffix(".in").read_text()
    for name in re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==", src, re.MULTILINE):
        assert name.lower() in pinned


def installable(filename: str) -> bool:
    """A wheel the images' interpreter takes: CPython 3.11 on x86_64 with glibc 2.36 (Debian bookworm)."""
    from packaging.utils import parse_wheel_filename

    *_, tags = parse_wheel_filename(filename)
    for tag in tags:
        glibc = re.fullmatch(r"manylinux_2_(\d+)_x86_64", tag.platform)
        platform_ok = tag.platform in ("any", "manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64",
                                       "linux_x86_64") or bool(glibc and int(glibc.group(1)) <= 36)
        if platform_ok and tag.interpreter in ("cp311", "py3", "py311", "cp3") and tag.abi in ("cp311", "abi3", "none"):
            return True
    return False


def check_cuda_lock(lock: Path) -> None:
    """Every pin of a CUDA lock names a wheel on PyPI that the image can install and whose sha256 the lock lists."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    text = lock.read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if re.match(r"[A-Za-z0-9]", b)]

    def check(block: str) -> str | None:
        from packaging.utils import canonicalize_name, parse_wheel_filename
        from packaging.version import Version

        name, version = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", block).groups()
        hashes = set(re.findall(r"sha256:([0-9a-f]{64})", block))
        # PyPI's JSON simple index (PEP 691): the same listing pip and uv resolve from.
        req = urllib.request.Request(f"https://pypi.org/simple/{canonicalize_name(name)}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            files = json.load(resp)["files"]
        ok = [f["filename"] for f in files if f["filename"].endswith(".whl") and not f.get("yanked")
              and f["hashes"].get("sha256") in hashes and parse_wheel_filename(f["filename"])[1] == Version(version)
              and installable(f["filename"])]
        return None if ok else f"{name}=={version}: no installable wheel with a locked hash on PyPI"

    with ThreadPoolExecutor(8) as pool:
        problems = [p for p in pool.map(check, blocks) if p]
    assert not problems, problems
