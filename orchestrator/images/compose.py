"""compose.yaml is the one place image names and build recipes live; this module only reads it.

A service says what it holds in its build arguments (``FRAMEWORK``, ``FLAVOUR``, ``FRAMEWORK_VERSION``,
``BASE_IMAGE``), so ``numpy``, ``numpy-1.26.4`` and ``jax-0.11.0-py3.13-gpu`` are all read the same way; a
service without them falls back to its name (``<framework>`` CPU, ``<framework>-gpu`` CUDA). Several versions
of one framework may be declared; the top-level ``x-gdbench: {default: {FRAMEWORK: VERSION}}`` says which one
a bare framework name means (absent: the newest declared). Tags may use compose variable interpolation
(``${VAR:-default}`` and friends, ``.env`` beside the file), implemented here so no compose plugin is needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from orchestrator import project as projects
from orchestrator.errors import ComposeError, InvalidOptions
from orchestrator.images.versions import BASES, DEFAULT_PYTHON

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
    def args(self) -> dict[str, str]:
        return self.build.args if self.build else {}

    @property
    def framework(self) -> str:
        return self.args.get("FRAMEWORK") or self.name.removesuffix("-gpu")

    @property
    def flavour(self) -> str:
        return self.args.get("FLAVOUR") or ("cuda" if self.name.endswith("-gpu") else "cpu")

    @property
    def framework_version(self) -> str | None:
        """The pinned release as PyPI names it, without a local build tag (torch's ``2.13.0+cpu`` → ``2.13.0``)."""
        version = self.args.get("FRAMEWORK_VERSION")
        return version.split("+")[0] if version else None

    @property
    def python(self) -> str:
        """The Python of the service's base: a project base by its tag, anything else counts as the default's."""
        base = self.args.get("BASE_IMAGE")
        return next((b.python for b in BASES.values() if b.tag == base), DEFAULT_PYTHON)

    @property
    def cuda_build(self) -> str | None:
        """``cuda13`` for a build declared with ``images add --cuda 13``; None for the flavour's default one."""
        return self.args.get("CUDA_BUILD") or None

    @property
    def version_key(self) -> str | None:
        """What ``--frameworks FRAMEWORK@KEY`` names this service by: the version, plus ``+cuda13`` for a named
        CUDA build and ``-py3.13`` off the default Python (so each stays a choice of its own)."""
        if self.framework_version is None:
            return None
        return self.framework_version + (f"+{self.cuda_build}" if self.cuda_build else "") + self._python_suffix

    @property
    def version_aliases(self) -> tuple[str, ...]:
        """Other keys that name this service: a default CUDA build also answers to the CUDA major its
        ``CUDA_VERSION`` says (``jax@0.10.2+cuda12`` is the default jax-gpu when that is CUDA 12.9)."""
        cuda = self.args.get("CUDA_VERSION", "")
        if self.cuda_build or not cuda or self.framework_version is None:
            return ()
        return (f"{self.framework_version}+cuda{cuda.split('.')[0]}{self._python_suffix}",)

    @property
    def _python_suffix(self) -> str:
        return "" if self.python == DEFAULT_PYTHON else f"-py{self.python}"


def _version_order(svc: Service) -> tuple[Version, bool]:
    try:
        v = Version(svc.framework_version or "0")
    except InvalidVersion:
        v = Version("0")
    return v, svc.python == DEFAULT_PYTHON


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
    #: ``x-gdbench.default``: the version a bare framework name runs, per framework.
    defaults: dict[str, str] = field(default_factory=dict)

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise ComposeError(
                f"{self.path} has no service {name!r} (services: {', '.join(self.services) or 'none'})",
                fix=f"add a {name!r} service to {self.path.name}",
            ) from None

    def versions_of(self, framework: str, flavour: str) -> list[Service]:
        """Every declared service of a framework in a flavour, oldest version first."""
        found = [s for s in self.services.values() if s.framework == framework and s.flavour == flavour]
        return sorted(found, key=_version_order)

    def service_for(self, framework: str, flavour: str, version: str | None = None) -> Service:
        """The image service for a framework in a flavour (``cpu`` or ``cuda``) at a declared version.

        ``version`` None: the compose default for the framework where that flavour declares it, else the
        newest declared. A version matches a service's ``version_key`` (``2.4.6``, ``2.4.6-py3.13``).
        """
        declared = self.versions_of(framework, flavour)
        if not declared:  # keeps the old message for a file without the service at all
            return self.service(framework if flavour == "cpu" else f"{framework}-gpu")
        wanted = version if version is not None else self.defaults.get(framework)
        match = [s for s in declared if wanted is not None and (s.version_key == wanted
                                                                  or wanted in s.version_aliases)]
        if match:
            return match[0]
        if version is None:  # a default declared only in the other flavour: this flavour's newest
            return declared[-1]
        keys = ", ".join(s.version_key or s.name for s in declared)
        m = re.fullmatch(r"(?P<v>[^+]+?)(?:\+cuda(?P<cuda>\d+))?(?:-py(?P<py>[\d.]+))?", version)
        release, cuda, python = (m["v"], m["cuda"], m["py"]) if m else (version, None, None)
        raise InvalidOptions(f"{framework} {version} ({flavour}) is not declared in {self.path.name} "
                             f"(declared: {keys})", fix=f"gdbench images add {framework}=={release}"
                             + (f" --cuda {cuda}" if cuda else " --flavour cuda" if flavour == "cuda" else "")
                             + (f" --python {python}" if python else ""))


    def framework_versions(self, framework: str, flavour: str, asked: str | None) -> list[str | None]:
        """``--frameworks`` semantics over this file: bare name → [None] (the default), ``all`` → every
        declared version key, a version → itself once checked to be declared."""
        if asked is None:
            self.service_for(framework, flavour)
            return [None]
        if asked == "all":
            keys = [s.version_key for s in self.versions_of(framework, flavour) if s.version_key]
            if not keys:
                raise InvalidOptions(f"{framework}@all: {self.path.name} declares no {flavour} version of {framework}",
                                     fix=f"gdbench images add {framework}==VERSION"
                                     + (" --flavour cuda" if flavour == "cuda" else ""))
            return list(keys)
        self.service_for(framework, flavour, asked)
        return [asked]


def find_compose(explicit: str | Path | None = None, project: str | Path | None = None) -> Path:
    """``--compose``, ``--project``, ``$GDBENCH_COMPOSE``, then the project directory's: ``orchestrator.project``."""
    return projects.locate(explicit, project).compose


def load_compose(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                 project: str | Path | None = None) -> ComposeFile:
    """Parse and interpolate the compose file; only ``image``, ``build`` and ``profiles`` are used."""
    import yaml

    file = find_compose(path, project)
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
    return ComposeFile(path=file, services=services, defaults=_defaults(raw.get("x-gdbench"), file, services))


def _defaults(raw: Any, file: Path, services: dict[str, Service]) -> dict[str, str]:
    """``x-gdbench: {default: {FRAMEWORK: VERSION}}``, each a declared version; anything else is one line."""
    if raw is None:
        return {}
    fix = f'fix x-gdbench in {file.name}, e.g. x-gdbench: {{default: {{numpy: "2.4.6"}}}}'
    default = raw.get("default") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(default or {}, dict):
        raise ComposeError(f"{file}: x-gdbench must be a mapping with a default: mapping of framework to version",
                           fix=fix)
    out: dict[str, str] = {}
    for fw, version in (default or {}).items():
        keys = sorted({s.version_key for s in services.values() if s.framework == fw and s.version_key})
        if not isinstance(version, str | int | float) or isinstance(version, bool):
            raise ComposeError(f"{file}: x-gdbench default for {fw!r} must be a version string, got {version!r}",
                               fix=fix)
        if not keys:
            raise ComposeError(f"{file}: x-gdbench default names {fw!r}, which no service declares", fix=fix)
        if str(version) not in keys:
            raise ComposeError(f"{file}: x-gdbench default {fw} {version} is not declared (declared: "
                               f"{', '.join(keys)})", fix=f"gdbench images add {fw}=={version}, or {fix}")
        out[str(fw)] = str(version)
    return out
