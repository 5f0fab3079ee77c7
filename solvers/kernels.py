"""Which code path a row's products took: the BLAS each framework used and the kernel it picked, per row.

"torch is slow here because MKL runs its generic path on this CPU" should be a fact in the row, not a
paragraph. What can be read is read at run time, after the timed runs, in the process that ran them:

- OpenBLAS: threadpoolctl's ``architecture``, the core kernels OpenBLAS chose (Haswell, SkylakeX, Zen…).
- MKL (torch's CPU wheel): one gemv under ``torch.backends.mkl.verbose``; its banner names the instruction
  set MKL dispatched to ("Intel(R) AVX2 enabled processors" or, its generic path, "Intel(R) Architecture
  processors"). MKL prints to the C stdout, so fd 1 is pointed at a temp file for that one call.
- numba: its own LLVM loops for the target CPU LLVM reports; no BLAS in ``fused``.
- XLA (jax, tensorflow): the dot emitter XLA:CPU picks is not exposed at run time; the row says so.

Each framework's ``kernel_path(device, variant)`` returns one line for the row; ``openblas``, ``mkl_summary``
(with ``captured_c_stdout``) and ``xla`` are the readers they share.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator

#: The part of MKL's verbose banner that names the dispatched instruction set.
_MKL_ISA = re.compile(r"for Intel\(R\) 64 architecture (?P<isa>.+?) ?(?:enabled )?processors", re.IGNORECASE)
#: MKL's banner for its generic (non-vectorised-dispatch) path.
MKL_GENERIC = "Intel(R) Architecture"


def openblas(prefix_hint: str | None = None) -> str | None:
    """"OpenBLAS 0.3.31 Haswell" for the OpenBLAS this process loaded (only one whose path contains
    ``prefix_hint``, e.g. numpy's own, when given), else None."""
    from threadpoolctl import threadpool_info

    found = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    if prefix_hint:
        found = [i for i in found if prefix_hint in str(i.get("filepath"))]
    if not found:
        return None
    info = found[0]
    return f"OpenBLAS {info.get('version')} {info.get('architecture') or 'unknown kernels'}"


@contextlib.contextmanager
def _c_stdout_to(path: str) -> Iterator[None]:
    """Point fd 1 at ``path`` for the block: what C code prints there (MKL's verbose lines) lands in the file,
    never in the JSON document that ``python -m solvers run`` writes to stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
    try:
        os.dup2(fd, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)


def captured_c_stdout(call: Callable[[], object]) -> str:
    """What ``call`` printed on the C-level stdout."""
    fd, path = tempfile.mkstemp(prefix="gdbench-kernels-", suffix=".txt")
    os.close(fd)
    try:
        with _c_stdout_to(path):
            call()
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def xla(device: str) -> str:
    """XLA's line (jax, tensorflow): which dot emitter it chose is decided at compile time and not exposed by
    a running program, so the row says so rather than guess."""
    return f"XLA:{'GPU' if device == 'gpu' else 'CPU'} (its dot emitter is not readable at run time)"


def mkl_isa(banner: str) -> str | None:
    """The instruction set named by an ``MKL_VERBOSE`` banner ("Intel(R) AVX2 …" / "Intel(R) Architecture")."""
    m = _MKL_ISA.search(banner)
    return m.group("isa").strip() if m else None


def mkl_summary(banner: str) -> str | None:
    """"MKL 2024.0 generic path (…)" or "MKL 2024.0 Intel(R) AVX2 …" from a verbose banner."""
    first = next((line for line in banner.splitlines() if line.startswith("MKL_VERBOSE") and "Product" in line), "")
    if not first:
        return None
    version = re.search(r"(?:oneMKL|Intel\(R\) MKL) (\S+)", first)
    isa = mkl_isa(first)
    name = f"MKL {version.group(1) if version else '?'}"
    if isa is None:
        return f"{name} (instruction set not named)"
    if isa.startswith(MKL_GENERIC):
        return f"{name} generic path ({isa} processors)"
    return f"{name} {isa} path"
