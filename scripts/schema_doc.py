"""docs/schema.md from the result document's JSON schema: ``python scripts/schema_doc.py > docs/schema.md``.

The schema comes from ``python -m solvers schema`` (run with this interpreter from the checkout's root), so the
page lists exactly the fields the solver validates. The types, the required marks and the conditions are read
from the schema; the one-line meanings are the ``DESCRIPTIONS`` below, keyed by the field's path
(``results[].sync_check.ratio``). A field with no line there still gets its row. tests/test_docs.py fails when
docs/schema.md differs from this script's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python scripts/schema_doc.py > docs/schema.md"

DESCRIPTIONS: dict[str, str] = {
    "schema_version": "the document's version; a version-1 document is migrated when loaded, any other refused",
    "framework": "the framework asked for (`numpy`, `numba`, `jax`, `tensorflow`, `torch`, `cupy`)",
    "device": "`cpu` or `gpu`",
    "status": "the document's outcome; `invalid` and `unavailable` documents carry the reason in `error`",
    "error": "why the document holds no run (bad input, framework or GPU unavailable, internal error)",
    "problem": "the problem solved; also `noise_std` (0.1), the noise's standard deviation",
    "problem.n": "rows of X",
    "problem.dims": "every d asked for, run in one process",
    "problem.iters": "gradient-descent iterations of one timed run",
    "problem.repeats": "timed runs per (d, variant)",
    "problem.dtype": "`float64` (default) or `float32`",
    "problem.seed": "integer seed of NumPy's data generation (with d it picks the draw)",
    "problem.lr": "step size α",
    "provenance": "what ran, where; also NumPy's version and the solver's arguments, and the orchestrator adds "
                  "the image id/digest, the host's Docker, driver and CUDA versions and `host`",
    "provenance.framework": "the framework and its version plus backend details",
    "provenance.framework.name": "framework name",
    "provenance.framework.version": "its version, null where it cannot be read",
    "provenance.python": "the Python that ran the solver: version, implementation, executable",
    "provenance.platform": "OS, release, machine, CPU model and count, cgroup cpuset and affinity",
    "provenance.threads": "the thread settings asked for and applied",
    "provenance.blas": "every loaded BLAS (threadpoolctl), with its kernel `architecture`; read again after "
                       "the runs",
    "provenance.gpu": "GPU name, memory, driver and CUDA driver via nvidia-ml-py; null where NVML is absent",
    "provenance.image": "the image tag and digest the orchestrator passes in",
    "provenance.timestamp_utc": "when the document was written (UTC)",
    "provenance.hostname": "the hostname the solver process sees (in a container, the container's)",
    "results": "one row per (d, variant)",
    "results[].dim": "d",
    "results[].variant": "`loop` or `fused`",
    "results[].status": "the row's outcome; `simulated`: checked under numba's CUDA simulator, no time",
    "results[].reason": "why a row is not `ok`",
    "results[].stderr_tail": "the last lines of the traceback of a row that crashed",
    "results[].time_per_iter_s": "median repeat time over iterations; present only on an `ok` row",
    "results[].median_s": "median of the repeat times",
    "results[].min_s": "fastest repeat",
    "results[].cv": "coefficient of variation of the repeats; above 10 % flags the row `noisy`",
    "results[].repeat_times_s": "every timed run of the full loop, each ended by a device sync",
    "results[].compile_s": "the first call, timed alone (JIT compile, graph capture, first-call overhead)",
    "results[].transfer_s": "moving the data to the device, outside the clock",
    "results[].max_rel_error": "normwise relative error max|θ − θref| / max|θref| against a float64 NumPy "
                               "reference of the same iterations on the same data",
    "results[].tolerance": "1e-8 (float64) or 1e-3 (float32)",
    "results[].output_dtype": "the dtype that actually ran; a silent float32 (or float64) fails the row",
    "results[].sync_check": "runs of k, 2k, 3k, 4k iterations: the fastest 2k run must take ≥ 1.8× the "
                            "fastest k run",
    "results[].sync_check.iters": "k",
    "results[].sync_check.ratio": "t(2k) / t(k)",
    "results[].sync_check.passed": "ratio ≥ 1.8",
    "results[].sync_check.unstable": "ratio above 2.2: the speed moved between runs; the time is kept",
    "results[].flags": "`noisy` (cv or iqr_rel above 10 %), `unstable` (sync ratio above 2.2), `retried` "
                       "(measured again after failing only its sync check)",
    "results[].iqr_rel": "interquartile range of the repeats over their median; above 10 % flags `noisy`",
    "results[].slope": "time against iterations fitted over the sync check's runs: seconds per iteration "
                       "with a 95 % interval",
    "results[].async_probe": "one run timed until `run` returns and until the sync returns, and a second sync "
                             "on finished work",
    "results[].layout": "`x_alignment` of the host arrays (64-byte lines) and `extra_bytes` of a solver's own "
                        "re-layout of X",
    "results[].energy": "GPU energy over the timed runs and any extra runs that stretch the window (NVML)",
    "results[].gpu_samples": "summary of the GPU samples NVML took during the timed runs",
    "results[].host_load": "load average at the row's start, steal seconds and involuntary context switches "
                           "during it",
    "results[].peak_rss_bytes": "peak host resident memory",
    "results[].peak_device_bytes": "peak device memory (JAX and TensorFlow preallocation is off)",
    "results[].gpu_state_before": "GPU SM/memory clocks and throttle reasons before the timed runs",
    "results[].gpu_state_after": "the same, after them",
    "floor": "the memory floor per d, measured in the same process and threads (`--no-floor` skips it): "
             "`dim`, `time_s`, `kind`, `call_overhead_bound`, `gemv_plain_s`, `gemv_padded_s`, `stream_s`, "
             "`sum_one_thread_s`",
}


def solver_schema() -> dict[str, Any]:
    """What ``python -m solvers schema`` prints, parsed."""
    out = subprocess.run([sys.executable, "-m", "solvers", "schema"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|")


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def render_type(node: dict[str, Any]) -> str:
    """One field's type in words: ``string or null``, ``array of integer``, ``one of `ok`, …``, ``number > 0``."""
    if "const" in node:
        return "always " + _code(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(_code(v) for v in node["enum"])
    types = node.get("type", "any")
    names = []
    for t in types if isinstance(types, list) else [types]:
        if t == "array" and isinstance(node.get("items"), dict):
            inner = node["items"]
            t = "array of " + ("objects" if inner.get("type") == "object" else render_type(inner))
        names.append(t)
    text = " or ".join(names)
    if "exclusiveMinimum" in node:
        text += f" (> {node['exclusiveMinimum']})"
    if "minimum" in node:
        text += f" (≥ {node['minimum']})"
    if "minItems" in node:
        text += f" (at least {node['minItems']} item(s))"
    return text


def _phrase(node: dict[str, Any]) -> str:
    """A constraint inside a condition: ```"ok"```, ``is number``, ``has at least 1 item(s)``."""
    if "const" in node:
        return "is " + _code(node["const"])
    text = render_type(node)
    if text.startswith("any ("):
        return "has " + text[len("any ("):-1]
    return "is " + text


def _condition(node: dict[str, Any]) -> list[str]:
    """The ``if``/``then``/``else`` of an object, one bullet each."""
    if "if" not in node:
        return []
    cond = ", ".join(f"`{k}` {_phrase(v)}" for k, v in node["if"].get("properties", {}).items())

    def effects(branch: dict[str, Any]) -> str:
        return "; ".join(f"`{k}` {_phrase(v)}" for k, v in branch.get("properties", {}).items())

    lines = []
    if "then" in node:
        lines.append(f"- When {cond}: {effects(node['then'])}.")
    if "else" in node:
        lines.append(f"- Otherwise: {effects(node['else'])}.")
    return lines


def _objects(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every object with properties (or an object's array items), depth first, with its path."""
    found = []
    if isinstance(node.get("items"), dict):
        return _objects(node["items"], path + "[]")
    if "properties" in node or "required" in node:
        found.append((path, node))
    for name, child in node.get("properties", {}).items():
        found.extend(_objects(child, f"{path}.{name}" if path else name))
    return found


def render_schema_markdown(schema: dict[str, Any]) -> str:
    """The page: a header naming the command that makes it, then one table per object of the document."""
    out = [
        f"<!-- Generated by `{COMMAND}` from `python -m solvers schema`; do not edit by hand. -->",
        "",
        f"# The result document: {schema.get('title', 'schema')}",
        "",
        "`python -m solvers run` writes one JSON document; its schema is defined once in `solvers/schema.py` "
        f"(JSON Schema, `schema_version` {schema.get('properties', {}).get('schema_version', {}).get('const')}) "
        "and printed by `python -m solvers schema`. It is validated when written and again when read. "
        "How each number in it is made: [protocol.md](protocol.md).",
        "",
    ]
    for path, node in _objects(schema, ""):
        required = set(node.get("required", []))
        title = path or "top level"
        out += [f"## `{title}`" if path else "## Top level", ""]
        about = DESCRIPTIONS.get(path) or DESCRIPTIONS.get(path.removesuffix("[]"))
        if about:
            out += [about[0].upper() + about[1:] + ".", ""]
        props = node.get("properties", {})
        if props:
            out += ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
            for name, child in props.items():
                key = f"{path}.{name}" if path else name
                out.append(f"| `{name}` | {render_type(child)} | {'yes' if name in required else ''} "
                           f"| {_cell(DESCRIPTIONS.get(key, ''))} |")
            out.append("")
        extra = sorted(required - set(props))
        if extra:
            out += ["Required: " + ", ".join(f"`{k}`" for k in extra) + ".", ""]
        conditions = _condition(node)
        if conditions:
            out += [*conditions, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> int:
    sys.stdout.write(render_schema_markdown(solver_schema()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
