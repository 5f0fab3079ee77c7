"""Adding and removing one image service in compose.yaml as text, so its comments and layout stay.

compose.yaml is the single declaration of images and is read by people as much as by tools; a YAML
round trip would drop its comments and anchors. A service added here is one block at the end of the
``services:`` mapping (always the file's last top-level key), written in the same shape as the hand-written
ones; removing it deletes exactly that block, so add-then-remove gives the file back byte for byte.
"""

from __future__ import annotations

import re

from orchestrator.errors import ComposeError

_SERVICE_LINE = re.compile(r"^  (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*):\s*$")


def service_block(*, name: str, image: str, framework: str, version: str, flavour: str, lock: str,
                  base_image: str | None, cuda_version: str | None, cuda_build: str | None = None,
                  index_url: str | None = None) -> str:
    """The YAML text of one versioned service (indented for ``services:``), ending in a newline."""
    gpu = flavour == "cuda"
    lines = [f"  {name}:"]
    if gpu:
        lines.append("    <<: *gpu")
    lines += [
        f"    image: {image}",
        "    build:",
        "      <<: *build",
        "      args:",
        "        <<: *args" if gpu else "        <<: *cpu-args",
        f"        FRAMEWORK: {framework}",
    ]
    if gpu:
        lines.append("        FLAVOUR: cuda")
    lines += [f'        FRAMEWORK_VERSION: "{version}"', f"        IMAGE_VERSION: {image.rpartition(':')[2]}",
              f"        LOCK: {lock}"]
    if base_image:
        lines.append(f"        BASE_IMAGE: {base_image}")
    if gpu:
        lines.append(f'        CUDA_VERSION: "{cuda_version or ""}"')
    if cuda_build:
        lines.append(f"        CUDA_BUILD: {cuda_build}")
    if index_url:
        lines.append(f'        INDEX_URL: "{index_url}"')
    return "\n".join(lines) + "\n"


def _blocks(text: str) -> tuple[int, list[tuple[str, int, int]]]:
    """Line index of ``services:`` and (name, first line, end line) of each service block under it."""
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == "services:")
    except StopIteration:
        raise ComposeError("compose file has no top-level services: mapping",
                           fix="restore compose.yaml from version control") from None
    blocks: list[tuple[str, int, int]] = []
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip() and not line.startswith(" ") and not line.startswith("#"):
            raise ComposeError(f"compose file has a top-level key after services: (line {i + 1})",
                               fix="keep services: the last top-level key of compose.yaml")
        m = _SERVICE_LINE.match(line)
        if m:
            if blocks:
                blocks[-1] = (blocks[-1][0], blocks[-1][1], i)
            blocks.append((m["name"], i, len(lines)))
    # A block ends before the blank lines and comments that precede the next block (they belong to it).
    trimmed = []
    for name, first, end in blocks:
        while end > first + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        trimmed.append((name, first, end))
    return start, trimmed


def service_names(text: str) -> list[str]:
    return [name for name, _, _ in _blocks(text)[1]]


def add_service(text: str, name: str, block: str) -> str:
    """``text`` with ``block`` appended as the last service, after one blank line."""
    if name in service_names(text):
        raise ComposeError(f"compose.yaml already declares service {name!r}",
                           fix="gdbench images remove it first, or keep the one declared")
    body = text if text.endswith("\n") else text + "\n"
    return body + "\n" + block


def remove_service(text: str, name: str) -> str:
    """``text`` without service ``name`` and the one blank line that separated it: the inverse of add."""
    _, blocks = _blocks(text)
    found = [(first, end) for n, first, end in blocks if n == name]
    if not found:
        raise ComposeError(f"compose.yaml declares no service {name!r}",
                           fix="gdbench images lists the declared versions")
    first, end = found[0]
    lines = text.splitlines(keepends=True)
    if first > 0 and not lines[first - 1].strip():
        first -= 1  # the separating blank line added with the block
    return "".join(lines[:first] + lines[end:])
