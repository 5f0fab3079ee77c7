"""compose.yaml is the one place image names and build recipes live; this module only reads it.

Services are named after frameworks: ``<framework>`` is the CPU flavour, ``<framework>-gpu`` the CUDA
flavour. Tags may use compose variable interpolation (``${VAR:-default}`` and friends, ``.env`` beside the
file), implemented here so no compose plugin is needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ComposeError

COMPOSE_ENV = "GDBENCH_COMPOSE"
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

# $$ | $NAME | ${NAME} | ${NAME<op>word} with op one of :- - :? ? :+ +
_VAR = re.compile(r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
                  r"(?:(?P<op>:?[-?+])(?P<word>(?:[^{}]|\{[^{}]*\})*))?\})")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-style variable substitution; ``${VAR:?msg}`` on an unset variable raises ``ComposeError``."""

    def sub(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["plain"] or m["braced"]
        value = env.get(name)
        op, word = m["op"], m["word"]
        if op is None:
            return value or ""
        unset_or_empty = not value if op.startswith(":") else value is None
        kind = op[-1]
        if kind == "-":
            return interpolate(word, env) if unset_or_empty else str(value)
        if kind == "+":
            return "" if unset_or_empty else interpolate(word, env)
        if unset_or_empty:  # "?"
            raise ComposeError(f"compose variable {name} is required: {interpolate(word, env) or 'not set'}",
                               fix=f"export {name}=…")
        return str(value)

    return _VAR.sub(sub, text)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a compose ``.env`` file (comments, ``export`` and simple quotes allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@dataclass(frozen=True)
class BuildSpec:
    """The ``build:`` section of a service, resolved to paths the Docker API takes."""

    context: Path
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    build: BuildSpec | None
    profiles: tuple[str, ...] = ()

    @property
    def framework(self) -> str:
        return self.name.removesuffix("-gpu")

    @property
    def flavour(self) -> str:
        return "cuda" if self.name.endswith("-gpu") else "cpu"


def _build_spec(raw: Any, base: Path, env: Mapping[str, str], service: str) -> BuildSpec | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return BuildSpec(context=(base / raw).resolve())
    if not isinstance(raw, dict):
        raise ComposeError(f"compose service {service}: build must be a path or a mapping")
    args_raw = raw.get("args") or {}
    args: dict[str, str] = {}
    items = args_raw.items() if isinstance(args_raw, dict) else (
        (a.partition("=")[0], a.partition("=")[2] if "=" in a else None) for a in args_raw)
    for key, value in items:
        if value is None:  # "ARG" alone: taken from the environment, as compose does
            value = env.get(key)
        if value is not None:
            args[str(key)] = str(value)
    return BuildSpec(context=(base / str(raw.get("context", "."))).resolve(),
                     dockerfile=str(raw.get("dockerfile", "Dockerfile")), args=args, target=raw.get("target"))


@dataclass(frozen=True)
class ComposeFile:
    path: Path
    services: dict[str, Service]

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise ComposeError(
                f"{self.path} has no service {name!r} (services: {', '.join(self.services) or 'none'})",
                fix=f"add a {name!r} service to {self.path.name}",
            ) from None

    def service_for(self, framework: str, flavour: str) -> Service:
        """The image service for a framework in a flavour (``cpu`` or ``cuda``)."""
        return self.service(framework if flavour == "cpu" else f"{framework}-gpu")


def find_compose(explicit: str | Path | None = None) -> Path:
    """``--compose``, then ``$GDBENCH_COMPOSE``, then the current directory, then the checkout gdbench runs from."""
    if explicit or os.environ.get(COMPOSE_ENV):
        path = Path(explicit or os.environ[COMPOSE_ENV])
        if not path.is_file():
            raise ComposeError(f"compose file {path} does not exist",
                               fix="pass --compose PATH to the project's compose.yaml")
        return path
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        for name in COMPOSE_NAMES:
            if (base / name).is_file():
                return base / name
    raise ComposeError("no compose.yaml found in the current directory or the gdbench checkout",
                       fix="run from the project root or pass --compose PATH")


def load_compose(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> ComposeFile:
    """Parse and interpolate the compose file; only ``image``, ``build`` and ``profiles`` are used."""
    import yaml

    file = find_compose(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ComposeError(f"cannot read {file}: {exc}", fix=f"fix the YAML in {file}") from exc
    merged_env = {**read_dotenv(file.parent / ".env"), **(os.environ if env is None else env)}
    services_raw = raw.get("services") if isinstance(raw, dict) else None
    if not isinstance(services_raw, dict):
        raise ComposeError(f"{file} has no services mapping", fix=f"define services in {file}")
    services: dict[str, Service] = {}
    for name, body in services_raw.items():
        body = _interpolate_tree(body or {}, merged_env)
        image = body.get("image")
        if not image:
            raise ComposeError(f"compose service {name!r} in {file} has no image: tag",
                               fix=f"give service {name!r} an image: gdbench/<framework>:<version>-<flavour>")
        services[name] = Service(name=name, image=str(image),
                                 build=_build_spec(body.get("build"), file.parent, merged_env, name),
                                 profiles=tuple(body.get("profiles") or ()))
    return ComposeFile(path=file, services=services)
