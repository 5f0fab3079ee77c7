"""A CUDA build as part of an image's identity: jax 0.10.2 for CUDA 12 and for CUDA 13 are two images.

Where PyPI carries several CUDA builds of one release it carries them as different distributions or extras
(``jax[cuda12]``/``jax[cuda13]``, ``cupy-cuda12x``/``cupy-cuda13x``, ``numba-cuda[cu12]``/``[cu13]``), so a
build is the flavour's recipe with those names moved to the asked major. A framework that publishes one
CUDA build per release on PyPI (TensorFlow's ``and-cuda``, torch's default wheel) resolves to that one;
the lock says which, and a build that is not the asked one is refused in one line. torch's other builds
live on PyTorch's own index: ``--index-url`` adds it to the recipe, so the lock records it.

The build names itself ``cuda<MAJOR>`` in tags (``gdbench/jax:0.10.2-cuda13``), services
(``jax-0.10.2-cuda13-gpu``), locks and ``--frameworks jax@0.10.2+cuda13``.
"""

from __future__ import annotations

import re

from orchestrator.errors import InvalidOptions

#: The CUDA majors a build may name.
MAJORS = ("12", "13")
#: The recipe spellings of a CUDA major, moved together: (pattern, replacement with {major}).
_SPELLINGS = (
    (re.compile(r"\[cuda1\d\]"), "[cuda{major}]"),  # jax[cuda12]
    (re.compile(r"\bcupy-cuda1\d(x)\b"), "cupy-cuda{major}x"),  # cupy-cuda12x
    (re.compile(r"\[cu1\d\]"), "[cu{major}]"),  # numba-cuda[cu12]
)
#: Where torch keeps its CUDA builds (one index per CUDA minor; e.g. cu126, cu130).
TORCH_INDEX = "https://download.pytorch.org/whl/cu{major}{minor}"


def parse_major(text: str | None) -> str | None:
    """``--cuda 13`` (or ``cuda13``, ``13.0``) → "13"; None stays None; anything else is one clear line."""
    if text is None:
        return None
    m = re.fullmatch(r"(?:cuda)?(\d+)(?:\.\d+)?", text.strip().lower())
    if not m or m[1] not in MAJORS:
        raise InvalidOptions(f"--cuda {text}: name a CUDA major, one of {', '.join(MAJORS)}",
                             fix="e.g. gdbench images add jax==0.10.2 --cuda 13")
    return m[1]


def build_name(major: str | None) -> str:
    """What a build adds to a tag, a service and a lock: ``-cuda13`` (nothing for the unnamed default)."""
    return f"-cuda{major}" if major else ""


def recipe_for(text: str, major: str | None, index_url: str | None) -> str:
    """The flavour's recipe moved to ``major`` (every spelling of the CUDA major it holds) and, with
    ``index_url``, one more index for the resolver: the lock then records where its wheels come from."""
    out = text
    if major:
        for pattern, repl in _SPELLINGS:
            out = pattern.sub(repl.format(major=major), out)
    if index_url:
        lines = out.splitlines()
        at = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), len(lines))
        lines.insert(at, f"--extra-index-url {index_url}")
        out = "\n".join(lines) + "\n"
    return out


def check_resolved(framework: str, version: str, major: str | None, resolved: str | None,
                   index_url: str | None) -> str | None:
    """Why a lock that resolved CUDA ``resolved`` (MAJOR.MINOR) is not the asked build, or None if it is."""
    if major is None or resolved is None or resolved.split(".")[0] == major:
        return None
    got = resolved.split(".")[0]
    if framework == "torch" and not index_url:
        return (f"torch {version} on PyPI is built for CUDA {resolved} only; its CUDA {major} builds are on "
                f"PyTorch's own index: add --index-url {TORCH_INDEX.format(major=major, minor='X')} "
                f"(e.g. {TORCH_INDEX.format(major=major, minor='6' if major == '12' else '0')})")
    return (f"{framework} {version} resolves CUDA {resolved}, not CUDA {major}"
            + ("" if index_url else " (PyPI carries no CUDA " + major + " build of it)")
            + f"; declare --cuda {got} instead")
