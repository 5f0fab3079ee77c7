"""Slurm's own commands through subprocess: the most portable client (pyslurm has no build for 22.05, and
slurmrestd needs JWT set up by an admin). Every failure is one line that says which command and why.

``SLURM_CONF`` points the commands at a cluster other than the machine's default (a host's ``slurm_conf``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import GdbenchError, InvalidOptions

COMMANDS = ("sbatch", "salloc", "srun", "squeue", "sinfo", "scancel", "scontrol")
#: Fragments of a client's message when the controller does not answer.
CONTROLLER_DOWN = ("Unable to contact slurm controller", "Connection refused", "Zero Bytes were transmitted",
                   "Socket timed out", "Unable to establish controller machine")


class SlurmUnavailable(GdbenchError):
    """The Slurm commands are missing, or the controller does not answer."""


@dataclass(frozen=True)
class Slurm:
    """The client commands of one cluster (``conf``: its slurm.conf, None for the machine's default)."""

    conf: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.conf is not None:
            env["SLURM_CONF"] = str(self.conf)
        return env

    def check_commands(self) -> None:
        missing = [c for c in COMMANDS if shutil.which(c) is None]
        if missing:
            raise SlurmUnavailable(f"the Slurm client commands {', '.join(missing)} are not on PATH",
                                   fix="install Slurm's client (Debian: apt-get install slurm-client) or add its "
                                       "bin directory to PATH")

    def run(self, *argv: str, timeout: float = 60, stdin: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """One command to its end; a controller that does not answer is ``SlurmUnavailable``."""
        try:
            proc = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout,
                                  check=False, input=stdin.decode() if stdin is not None else None)
        except FileNotFoundError:
            self.check_commands()
            raise
        except subprocess.TimeoutExpired as exc:
            raise SlurmUnavailable(f"{argv[0]} did not answer within {timeout:g} s",
                                   fix="check that slurmctld is running (scontrol ping)") from exc
        if check and proc.returncode != 0:
            raise self.failure(argv[0], proc.stderr or proc.stdout)
        return proc

    def failure(self, command: str, text: str) -> GdbenchError:
        line = first_error(text)
        if any(f in text for f in CONTROLLER_DOWN):
            where = f" (SLURM_CONF={self.conf})" if self.conf else ""
            return SlurmUnavailable(f"the Slurm controller does not answer{where}: {line}",
                                    fix="start slurmctld (or check SlurmctldHost and SLURM_CONF), then retry")
        return GdbenchError(f"{command} failed: {line}")

    def version(self) -> str:
        """``slurm 22.05.8`` (Debian: ``slurm-wlm 22.05.8``) → ``22.05.8``."""
        words = self.run("sinfo", "--version").stdout.split()
        return words[-1] if words else "unknown"

    def ping(self) -> None:
        self.run("sinfo", "-h", "-o", "%P", timeout=30)

    def test_only(self, args: list[str], where: str, partition: str, constraint: str | None) -> None:
        """``sbatch --test-only``: would this request run? Nothing is queued. A request no node could ever
        satisfy is a bad option (one line, exit 2); one whose matching nodes are all drained or down right now is
        the cluster's state, said with Slurm's reasons (the host's cells are then unavailable, for --resume)."""
        proc = self.run("sbatch", "--test-only", *args, "--wrap", "true", check=False, timeout=30)
        if proc.returncode == 0:
            return
        text = proc.stderr or proc.stdout
        if any(f in text for f in CONTROLLER_DOWN):
            raise self.failure("sbatch", text)
        wanted = set(filter(None, re.split(r"[&|]", constraint or "")))
        matching = [n for n in self.nodes(partition, check=False) if wanted <= set(n["features"].split(","))]
        if matching and "|" not in (constraint or "") and all(_unusable(n["state"]) for n in matching):
            states = "; ".join(f"{n['name']} {n['state']} ({n['reason'] or 'no reason given'})" for n in matching)
            raise SlurmUnavailable(f"{where}: every node matching {constraint or 'the request'} in partition "
                                   f"{partition} is unavailable now: {states}",
                                   fix="when a node is back (scontrol update nodename=NODE state=resume): "
                                       "gdbench run --resume RUN_DIR")
        raise InvalidOptions(f"{where}: Slurm refuses the request ({' '.join(args)}): {first_error(text)}",
                             fix="check partition, constraint and gres against: sinfo -o '%P %N %f %G'")

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, Reason, NodeList, …); empty once Slurm forgot the job."""
        proc = self.run("scontrol", "show", "job", "-o", job_id, check=False, timeout=30)
        return parse_oneliner(proc.stdout) if proc.returncode == 0 else {}

    def node(self, name: str) -> dict[str, str]:
        proc = self.run("scontrol", "show", "node", "-o", name, check=False, timeout=30)
        return parse_oneliner(proc.stdout) if proc.returncode == 0 else {}

    def nodes(self, partition: str, check: bool = True) -> list[dict[str, str]]:
        """The partition's nodes with their state, features, GRES and reason (``sinfo -N``)."""
        proc = self.run("sinfo", "-h", "-N", "-p", partition, "-o", "%N|%T|%f|%G|%E", check=check)
        out = []
        for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
            name, state, features, gres, reason = [*line.split("|"), "", "", "", ""][:5]
            out.append({"name": name, "state": state, "features": features, "gres": gres,
                        "reason": "" if reason == "none" else reason})
        return out

    def cancel(self, *, job_id: str | None = None, name: str | None = None) -> None:
        args = ["scancel", "--full"] + ([f"--name={name}"] if name else []) + ([job_id] if job_id else [])
        self.run(*args, check=False, timeout=30)


def _unusable(state: str) -> bool:
    """sinfo's long state names (``drained``, ``down*``, ``draining``, ``fail``, ``not_responding``…)."""
    return any(word in state.lower() for word in ("drain", "down", "fail", "not_responding", "power"))


def parse_oneliner(text: str) -> dict[str, str]:
    """``Key=Value Key2=Value two`` (scontrol -o): values may hold spaces up to the next ``Key=``."""
    out: dict[str, str] = {}
    for m in re.finditer(r"(\w[\w:/]*)=(.*?)(?=\s+\w[\w:/]*=|$)", text.strip()):
        out[m[1]] = m[2].strip()
    return out


def first_error(text: str) -> str:
    """The first line that says something, without the command's ``sbatch: error:`` prefix."""
    for line in text.splitlines():
        line = re.sub(r"^\w+: (error|fatal): ", "", line.strip())
        if line:
            return line[:300]
    return "no message"
