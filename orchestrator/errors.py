"""One exception root for everything the orchestrator refuses to do, each carrying the fix.

``main()`` catches ``GdbenchError`` and prints one line (plus the fix) instead of a traceback: a missing
daemon or image is the user's environment, not a bug. Anything else that escapes is a bug and keeps its
traceback.
"""

from __future__ import annotations

#: Exit codes of ``gdbench`` (0-4 mirror ``python -m solvers``; the rest are the orchestrator's own).
EXIT_OK = 0
EXIT_FAILED = 1  # at least one container's document is ``failed``
EXIT_INVALID = 2  # bad options: nothing was started
EXIT_UNAVAILABLE = 3  # nothing failed, but some (framework, device) could not run here
EXIT_ENVIRONMENT = 5  # Docker, compose file or images are not in a usable state
EXIT_INTERRUPTED = 130


class GdbenchError(Exception):
    """A refusal with context: what went wrong, and the command or change that fixes it."""

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class InvalidOptions(GdbenchError):
    """Options that can never run, rejected before any container is created."""

    exit_code = EXIT_INVALID


class InventoryError(InvalidOptions):
    """A hosts file, a host's table or a ``--backend-opt`` that cannot be used as written."""


class DockerUnavailable(GdbenchError):
    """The daemon cannot be reached (not running, socket missing, permission denied)."""


class ImageMissing(GdbenchError):
    """A compose image tag is not present in the daemon."""


class ComposeError(GdbenchError):
    """compose.yaml is missing, unreadable, or lacks a service the sweep needs."""


class GpuUnavailable(GdbenchError):
    """The engine refused a GPU request (no NVIDIA runtime, hook or CDI device): no GPU work can run there."""


class HostLost(GdbenchError):
    """The engine stopped answering while a container ran on it (dockerd died, network gone)."""


class RunDirLocked(GdbenchError):
    """Another orchestrator holds the output directory."""


class Interrupted(BaseException):
    """SIGTERM arrived: unwind like KeyboardInterrupt so running containers are removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
