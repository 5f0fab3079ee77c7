"""The sweep's options, defined once: defaults and the rules every value must meet.

The solver CLI, the bench and the orchestrator all take these values; each reads its defaults and checks
from here so a default or a limit can never differ between them. A failed rule raises ``OptionError``
(a ``ValueError``) with one line naming the option; callers turn it into their own error class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .base import ALL_VARIANTS, DEVICES, VARIANTS
from .problem import DTYPES, parse_dims


class OptionError(ValueError):
    """A value no run could use, whatever is installed."""


@dataclass(frozen=True)
class Defaults:
    """What a run uses when it is not told otherwise."""

    dims: tuple[int, ...] = (2, 5, 10, 20, 50, 100)
    n: int = 10_000
    iters: int = 1_000
    #: Timed repeats per row: at least ``repeats`` (5: the fewest with which compare's Mann-Whitney test can
    #: reject at α = 0.05 with one overlapping pair), then more until the median's 95 % interval is within
    #: ±``ci_width`` of it, ``max_repeats`` are done or the repeats have taken ``row_budget_s``.
    repeats: int = 5
    max_repeats: int = 30
    ci_width: float = 0.02
    row_budget_s: float = 2.0
    dtype: str = "float64"
    seed: int = 0
    lr: float = 1e-3
    variants: tuple[str, ...] = VARIANTS
    #: The bench compares every framework at the two ends of the range.
    bench_dims: tuple[int, ...] = (2, 100)
    #: Lower bounds of the integer options.
    minimum: dict[str, int] = field(default_factory=lambda: {"n": 2, "iters": 1, "repeats": 1, "threads": 1})


DEFAULTS = Defaults()


def default_threads() -> int:
    """Two threads where the process may use two CPUs: the same for every framework, recorded in each run."""
    return min(2, len(os.sched_getaffinity(0)))


def split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def choose(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """A non-empty comma list drawn from ``allowed``, de-duplicated in order."""
    names = split(text)
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise OptionError(f"unknown {what}(s) {', '.join(unknown) or repr(text)}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def variants(text: str) -> list[str]:
    """Any known variant by name (the defaults are ``VARIANTS``; extras such as fused_cmdbuf only when asked)."""
    return choose(text, ALL_VARIANTS, "variant")


def devices(text: str, *, extra: tuple[str, ...] = ()) -> list[str]:
    return choose(text, (*DEVICES, *extra), "device")


def dims(text: str) -> list[int]:
    try:
        return list(dict.fromkeys(parse_dims(text)))
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def check_int(name: str, value: int) -> int:
    low = DEFAULTS.minimum[name]
    if value < low:
        raise OptionError(f"--{name} must be >= {low}, got {value}")
    return value


def check_sampling(repeats: int, max_repeats: int, ci_width: float, row_budget_s: float) -> None:
    """The adaptive-repeats options together: a maximum below the minimum or a budget of nothing is no rule."""
    check_int("repeats", repeats)
    if max_repeats < repeats:
        raise OptionError(f"--max-repeats ({max_repeats}) must be >= --repeats ({repeats}); "
                          f"equal values time exactly that many repeats")
    if not 0 <= ci_width < 1:
        raise OptionError(f"--ci-width is a fraction of the median in [0, 1) (0.02 = ±2 %), got {ci_width}")
    if not row_budget_s > 0:
        raise OptionError(f"--row-budget must be > 0 seconds, got {row_budget_s}")


def check_lr(value: float) -> float:
    if not 0 < value < 1:
        raise OptionError(f"--lr must be in (0, 1) for gradient descent to converge here, got {value}")
    return value


def check_dtype(value: str) -> str:
    if value not in DTYPES:
        raise OptionError(f"unknown dtype {value!r}; choose from {', '.join(DTYPES)}")
    return value
