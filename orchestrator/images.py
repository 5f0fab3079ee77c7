"""The compose images: which are built, what they pin, and building them through the Docker SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from solvers import registry

from . import labels as label_keys
from .compose import ComposeFile, Service
from .dockerhost import DockerEngine
from .errors import InvalidOptions


def image_rows(compose: ComposeFile, engine: DockerEngine) -> list[dict[str, Any]]:
    """One row per compose service: tag, built?, id, size, and the version labels the image carries."""
    rows = []
    for svc in compose.services.values():
        info = engine.image(svc.image)
        labels = info.labels if info else {}
        rows.append({
            "service": svc.name, "tag": svc.image, "flavour": svc.flavour, "built": info is not None,
            "id": info.id if info else None, "size_bytes": info.size_bytes if info else None,
            "created": info.created if info else None, "user": info.user if info else None,
            "framework_version": labels.get(label_keys.FRAMEWORK_VERSION),
            "cuda_version": labels.get(label_keys.CUDA_VERSION) or None,
            "labels": {k: labels[k] for k in label_keys.IMAGE if k in labels},
        })
    return rows


def select_services(compose: ComposeFile, names: list[str], flavour: str | None) -> list[Service]:
    """Services named directly (``jax-gpu``) or by framework (``jax`` → its CPU or ``--flavour`` service).

    No names: every CPU service, plus the CUDA ones when ``--flavour cuda``.
    """
    if not names:
        want = (flavour,) if flavour else ("cpu",)
        return [s for s in compose.services.values() if s.flavour in want]
    out: list[Service] = []
    for name in names:
        if name in compose.services:
            out.append(compose.services[name])
        elif name in registry.REGISTRY:
            out.append(compose.service_for(name, flavour or "cpu"))
        else:
            raise InvalidOptions(f"unknown image {name!r}; give a framework ({', '.join(registry.FRAMEWORKS)}) "
                                 f"or a compose service ({', '.join(compose.services)})")
    return list({s.name: s for s in out}.values())


def build(engine: DockerEngine, services: list[Service], on_line: Callable[[str], None]) -> None:
    """Build each service in order (classic builder); a failure stops at that service."""
    for svc in services:
        on_line(f"==> building {svc.image} (service {svc.name})")
        engine.build(svc, on_line)
