"""Build one compose service's image, offline, from its lock's wheelhouse: ``make image-<framework>``.

compose.yaml declares the tag and the build arguments; this checks them against the lock (framework and
CUDA versions), adds provenance only the host knows (git revision and date, the base's Python), and sends
Docker a build context of exactly the files the image needs, with the same relative paths as the checkout,
so a build with context ``.`` (compose, the orchestrator) makes the same image, only with a larger upload.

A service added with ``gdbench images add`` has no make rule of its own: ``--fetch`` first does what
``make image-<framework>`` does before it (the base, the gdbench wheel, the lock's wheelhouse for the
service's Python, the Debian packages), so ``gdbench images build`` and ``make images`` build it in one step.

Usage: python scripts/build_image.py SERVICE [--base IMAGE] [--fetch]
       python scripts/build_image.py --added FLAVOUR     (the added services of a flavour, one a line)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.images.compose import load_compose  # noqa: E402  (the one reader of compose.yaml)
from orchestrator.images.versions import BASES, DEFAULT_PYTHON, Base, cuda_from_lock  # noqa: E402  (bases and the CUDA a lock resolved)
from solvers.registry import REGISTRY  # noqa: E402  (which distributions carry a framework's version)

LOCAL_BASE = "gdbench/base:bookworm-py3.11"


def lock_path(framework: str, flavour: str, lock: str | None = None) -> Path:
    """The service's ``LOCK`` build argument, else its framework's default lock for the flavour."""
    return ROOT / lock if lock else ROOT / "images" / framework / f"requirements-{flavour}.txt"


def wheelhouse_for(framework: str, lock: Path) -> str:
    """One wheelhouse per lock: ``<framework>-<flavour>`` for the default, ``<framework>-<version>-<flavour>``."""
    return f".cache/wheelhouse/{framework}-{lock.stem.removeprefix('requirements-')}"


def pinned(lock: Path, dist: str) -> str | None:
    m = re.search(rf"^{re.escape(dist)}(?:\[[^\]]*\])?==([^\s;\\]+)", lock.read_text(), re.MULTILINE)
    return m.group(1) if m else None


def framework_pin(framework: str, lock: Path) -> str | None:
    """The framework's version in that lock: the first of its distributions (``solvers.registry``) the lock pins
    (tensorflow-cpu provides ``tensorflow`` in its CPU lock, cupy-cuda12x provides ``cupy``)."""
    entry = REGISTRY.get(framework)
    return next((v for dist in (entry.dists if entry else (framework,)) if (v := pinned(lock, dist))), None)


def cuda_version(lock: Path) -> str:
    """major.minor of the CUDA runtime wheel a CUDA lock pins; "" for a lock without one."""
    return cuda_from_lock(lock.read_text()) or ""


def _out(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def python_version(base: str) -> str:
    label = _out(["docker", "image", "inspect", "-f", '{{index .Config.Labels "io.gdbench.python.version"}}', base])
    if label and label != "<no value>":
        return label
    return _out(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", base, "-c",
                 "import platform; print(platform.python_version())"])


def ensure_base(tag: str) -> None:
    """A project base the service names is made here if missing (once per machine); others must be pulled."""
    base = next((b for b in BASES.values() if b.tag == tag), None)
    if base is None or _out(["docker", "image", "inspect", "-f", "{{.Id}}", tag]):
        return
    done = subprocess.run(["bash", "scripts/build-base-image.sh", tag], cwd=ROOT,
                          env={**os.environ, "SUITE": base.suite}, check=False)
    if done.returncode:
        raise BuildError(f"could not build the base {tag} (SUITE={base.suite} bash scripts/build-base-image.sh)")


def provenance() -> dict[str, str]:
    """Revision (``-dirty`` when what goes into the image differs from it), commit date, source URL."""
    revision = _out(["git", "rev-parse", "HEAD"]) or "unknown"
    if _out(["git", "status", "--porcelain", "--", "solvers", "pyproject.toml", "images"]):
        revision += "-dirty"
    return {"REVISION": revision, "CREATED": _out(["git", "log", "-1", "--format=%cI"]),
            "SOURCE": _out(["git", "remote", "get-url", "origin"])}


class BuildError(RuntimeError):
    pass


def base_of(args: dict[str, str]) -> Base:
    """The project base a service builds on (an official base counts as the default Python's)."""
    return next((b for b in BASES.values() if b.tag == args.get("BASE_IMAGE")), BASES[DEFAULT_PYTHON])


def check(service_name: str, image: str, args: dict[str, str]) -> Path:
    """The compose declaration must agree with the lock; a mismatch is a build error, never a silent relabel."""
    fw, flavour = args.get("FRAMEWORK", ""), args.get("FLAVOUR", "")
    lock = lock_path(fw, flavour, args.get("LOCK"))
    if not lock.is_file():
        raise BuildError(f"service {service_name}: no lock {lock.relative_to(ROOT)} for {fw} ({flavour})")
    locked = framework_pin(fw, lock)
    if locked != args.get("FRAMEWORK_VERSION"):
        raise BuildError(f"service {service_name}: compose says {fw} {args.get('FRAMEWORK_VERSION')}, "
                         f"{lock.relative_to(ROOT)} pins {locked}")
    suffix = base_of(args).suffix
    build = args.get("CUDA_BUILD") or flavour  # a named CUDA build (images add --cuda 13) tags itself cuda13
    if image != f"gdbench/{fw}:{args.get('IMAGE_VERSION')}" or args["IMAGE_VERSION"] != (
            f"{locked.split('+')[0]}-{build}{suffix}"):
        raise BuildError(f"service {service_name}: tag {image} is not gdbench/{fw}:<{fw} version>-{build}{suffix}")
    if args.get("CUDA_VERSION", "") != cuda_version(lock):
        raise BuildError(f"service {service_name}: compose says CUDA {args.get('CUDA_VERSION')!r}, "
                         f"the lock's runtime is {cuda_version(lock)!r}")
    return lock


def added_services(flavour: str) -> list[str]:
    """Services that build from a lock other than their framework's default (what ``images add`` declared)."""
    compose = load_compose(ROOT / "compose.yaml")
    return [s.name for s in compose.services.values() if s.flavour == flavour and s.args.get("LOCK")]


def fetch(service_name: str, env: dict[str, str]) -> None:
    """What the build needs on disk before it: base, gdbench wheel, the lock's wheelhouse, the .deb files."""
    svc = load_compose(ROOT / "compose.yaml", env=env).service(service_name)
    args = svc.args
    ensure_base(args["BASE_IMAGE"])
    lock = lock_path(args.get("FRAMEWORK", ""), args.get("FLAVOUR", ""), args.get("LOCK"))
    steps = [["bash", "scripts/build-wheel.sh", ".cache/dist"],
             [sys.executable, "scripts/fetch_wheels.py", lock.relative_to(ROOT).as_posix(),
              wheelhouse_for(args["FRAMEWORK"], lock), "--python", base_of(args).python]]
    apt = ROOT / "images" / args["FRAMEWORK"] / "apt-packages.txt"
    if apt.is_file():
        steps.append(["bash", "scripts/fetch-debs.sh", args["BASE_IMAGE"], apt.relative_to(ROOT).as_posix(),
                      f".cache/debhouse/{args['FRAMEWORK']}"])
    for cmd in steps:
        done = subprocess.run(cmd, cwd=ROOT, env={**env, "PYTHON": sys.executable}, stdout=subprocess.DEVNULL,
                              check=False)
        if done.returncode:
            raise BuildError(f"service {service_name}: {' '.join(cmd)} failed (exit {done.returncode})")


def build(service_name: str, base: str | None, log_dir: Path, no_cache: bool = False,
          fetch_first: bool = False) -> str:
    env = dict(os.environ)
    if base:
        env["GDBENCH_BASE_IMAGE"] = base
    if fetch_first:
        fetch(service_name, env)
    compose = load_compose(ROOT / "compose.yaml", env=env)
    svc = compose.service(service_name)
    if svc.build is None:
        raise BuildError(f"service {service_name} has no build section")
    args = dict(svc.build.args)
    lock = check(service_name, svc.image, args)
    ensure_base(args["BASE_IMAGE"])
    fw = args["FRAMEWORK"]
    for key, value in {**provenance(), "PYTHON_VERSION": python_version(args["BASE_IMAGE"])}.items():
        args[key] = args.get(key) or value
    wheelhouse = wheelhouse_for(fw, lock)
    args["LOCK"], args["WHEELHOUSE"] = lock.relative_to(ROOT).as_posix(), wheelhouse
    debhouse = f".cache/debhouse/{fw}"
    (ROOT / debhouse).mkdir(parents=True, exist_ok=True)
    wheels = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / ".cache/dist").glob("gdbench-*.whl"))
    if not (ROOT / wheelhouse).is_dir() or not wheels:
        raise BuildError(f"{wheelhouse} or the gdbench wheel is missing: run make gdbench-wheel and "
                         f"python scripts/fetch_wheels.py {lock.relative_to(ROOT)} {wheelhouse} "
                         f"--python {base_of(args).python}")
    context = [svc.build.dockerfile, "images/system-delta.sh", lock.relative_to(ROOT).as_posix(), wheelhouse,
               debhouse, *wheels]
    # --network none: the build installs from the context only, so it needs (and gets) no network at all.
    cmd = ["docker", "build", "--rm", "--force-rm", "--network", "none", "-f", svc.build.dockerfile, "-t", svc.image]
    if no_cache:
        cmd.append("--no-cache")
    for key, value in sorted(args.items()):
        cmd += ["--build-arg", f"{key}={value}"]
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{service_name}.log"
    print(f"building {svc.image} (service {service_name}) on {args['BASE_IMAGE']} …", flush=True)
    start = time.monotonic()
    with open(log, "w") as fh:
        tar = subprocess.Popen(["tar", "-c", *context], cwd=ROOT, stdout=subprocess.PIPE)
        done = subprocess.run([*cmd, "-"], stdin=tar.stdout, stdout=fh, stderr=subprocess.STDOUT,
                              env={**env, "DOCKER_BUILDKIT": "0"}, check=False)
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
    if done.returncode or tar.returncode:
        sys.stderr.write(log.read_text()[-6000:])
        raise BuildError(f"building {svc.image} failed (full log: {log.relative_to(ROOT)})")
    size = int(_out(["docker", "image", "inspect", "-f", "{{.Size}}", svc.image]) or 0)
    print(f"built {svc.image} in {time.monotonic() - start:.0f} s, {size / 1e6:.0f} MB", flush=True)
    return svc.image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("service", nargs="?", help="compose service: numpy, …, torch, numba-gpu, …, cupy-gpu")
    parser.add_argument("--fetch", action="store_true", help="fetch base, wheel, wheelhouse and .debs first")
    parser.add_argument("--added", choices=("cpu", "cuda"), help="list the added services of a flavour and exit")
    parser.add_argument("--base", help=f"base image (default: compose's, i.e. {LOCAL_BASE})")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".cache" / "build-logs")
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer (a cold build's time)")
    opts = parser.parse_args(argv)
    if opts.added:
        print("\n".join(added_services(opts.added)))
        return 0
    if not opts.service:
        parser.error("give a SERVICE (or --added FLAVOUR)")
    try:
        build(opts.service, opts.base, opts.log_dir, opts.no_cache, opts.fetch)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
