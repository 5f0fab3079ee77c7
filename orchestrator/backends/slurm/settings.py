"""A Slurm host's own keys: which nodes (partition, constraint, gres), how the image runs there, and the job's
limits. A host is one exclusive node of that description; two hosts of one cluster are two nodes side by side.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InventoryError

RUNTIMES = ("docker", "oci")
KEYS = ("partition", "constraint", "gres", "runtime", "account", "qos", "time_limit", "cpus_per_task", "mem",
        "image_dir", "slurm_conf")
#: Slurm's --time forms: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED.
_TIME = re.compile(r"\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|unlimited")
_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9_.:,&|()\[\]*!-]+")


@dataclass(frozen=True)
class Settings:
    partition: str
    constraint: str | None = None
    gres: str | None = None
    runtime: str = "docker"
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    #: A directory every node can read: images are saved there once and loaded by each node (else streamed).
    image_dir: Path | None = None
    #: The cluster's slurm.conf where it is not the machine's default (SLURM_CONF for every command).
    slurm_conf: Path | None = None

    @property
    def address(self) -> str:
        where = f"partition {self.partition}" + (f", constraint {self.constraint}" if self.constraint else "")
        return f"slurm {where}"

    def allocation_args(self) -> list[str]:
        """What every request for this host's node says: one whole node of this description."""
        args = ["--partition", self.partition, "--nodes", "1", "--ntasks", "1", "--exclusive"]
        for flag, value in (("--constraint", self.constraint), ("--gres", self.gres), ("--account", self.account),
                            ("--qos", self.qos), ("--time", self.time_limit), ("--mem", self.mem)):
            if value:
                args += [flag, value]
        if self.cpus_per_task:
            args += ["--cpus-per-task", str(self.cpus_per_task)]
        return args

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("image_dir", "slurm_conf"):
            out[key] = str(out[key]) if out[key] is not None else None
        return out

    @classmethod
    def parse(cls, table: dict[str, Any], *, where: str, base: Path) -> Settings:
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise InventoryError(f"{where}: unknown key(s) {', '.join(unknown)}; a slurm host knows "
                                 f"{', '.join(KEYS)} (and the common kind, cpuset, threads, gpus)")
        if "partition" not in table:
            raise InventoryError(f"{where}: a slurm host needs partition = \"NAME\"",
                                 fix="sinfo -s lists the partitions")
        text: dict[str, str] = {}
        for key in ("partition", "constraint", "gres", "account", "qos", "runtime", "image_dir", "slurm_conf", "mem",
                    "time_limit"):
            if key in table:
                value = table[key]
                if isinstance(value, int) and not isinstance(value, bool) and key == "time_limit":
                    value = str(value)
                if not isinstance(value, str) or not value.strip():
                    raise InventoryError(f"{where}: {key} must be a non-empty string")
                text[key] = value.strip()
        for key in ("partition", "constraint", "gres", "account", "qos"):
            if key in text and not _WORD.fullmatch(text[key]):
                raise InventoryError(f"{where}: {key} {text[key]!r} has characters Slurm does not take")
        runtime = text.get("runtime", "docker")
        if runtime not in RUNTIMES:
            raise InventoryError(f"{where}: runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}",
                                 fix="docker: docker load + docker run on the node; oci: srun --container with the "
                                     "cluster's oci.conf (pyxis/enroot is not supported yet)")
        if "time_limit" in text and not _TIME.fullmatch(text["time_limit"]):
            raise InventoryError(f"{where}: time_limit {text['time_limit']!r} is not a Slurm time "
                                 "(minutes, MM:SS, HH:MM:SS, D-HH:MM:SS)")
        if "mem" in text and not _MEM.fullmatch(text["mem"]):
            raise InventoryError(f"{where}: mem {text['mem']!r} is not a Slurm size (e.g. 8G, 16000M)")
        cpus = table.get("cpus_per_task")
        if isinstance(cpus, str) and cpus.isdigit():
            cpus = int(cpus)
        if cpus is not None and (not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1):
            raise InventoryError(f"{where}: cpus_per_task must be a positive integer, got {cpus!r}")
        paths = {k: _path(text[k], base) for k in ("image_dir", "slurm_conf") if k in text}
        if "slurm_conf" in paths and not paths["slurm_conf"].is_file():
            raise InventoryError(f"{where}: slurm_conf {paths['slurm_conf']} does not exist",
                                 fix="point it at the cluster's slurm.conf, or drop it to use the default")
        if runtime == "oci" and "image_dir" not in paths:
            raise InventoryError(f"{where}: runtime = \"oci\" needs image_dir, a directory every node can read",
                                 fix="the OCI bundles made from the images are written there")
        return cls(partition=text["partition"], constraint=text.get("constraint"), gres=text.get("gres"),
                   runtime=runtime, account=text.get("account"), qos=text.get("qos"),
                   time_limit=text.get("time_limit"), cpus_per_task=cpus, mem=text.get("mem"),
                   image_dir=paths.get("image_dir"), slurm_conf=paths.get("slurm_conf"))


def _path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path).resolve()
