"""Comparing what two pieces of code build, in words a student can act on.

Both sides are descriptions from `introspect.describe`: module path -> node.
"""

from __future__ import annotations

from typing import Any

from grader.introspect import call_text


def normalize(value: Any) -> Any:
    """(3, 3) and 3 mean the same kernel; True and 1 the same flag."""
    if isinstance(value, list):
        if value and all(v == value[0] for v in value) and isinstance(value[0], (int, float)):
            return normalize(value[0])
        return [normalize(v) for v in value]
    if isinstance(value, bool):
        return int(value)
    return value


def same(a: Any, b: Any) -> bool:
    return normalize(a) == normalize(b)


def arguments(node: dict, reference_node: dict | None = None) -> dict[str, Any]:
    """The values that define a module: settings for torch.nn modules, constructor
    arguments for others.  Named as the reference names them when the student renamed
    parameters (matched by position)."""
    if node.get("builtin") or node.get("init") is None:
        return dict(node.get("settings") or {})
    values = dict(node["init"])
    if reference_node is not None and not reference_node.get("builtin") and reference_node.get("init"):
        ref_names = list(reference_node["init"])
        if set(values) != set(ref_names):
            return {ref_names[i]: v for i, v in enumerate(values.values()) if i < len(ref_names)}
    return values


def signature(nodes: dict, path: str) -> tuple:
    """A comparable fingerprint of the subtree at `path`: types, settings, arguments, shapes."""
    node = nodes[path]
    children = tuple(signature(nodes, _join(path, c)) for c in node["children"])
    args = tuple(sorted((k, repr(normalize(v))) for k, v in arguments(node).items()))
    params = tuple(sorted((k, tuple(v)) for k, v in node["params"].items()))
    return node["type"], args, params, children


def _join(path: str, child: str) -> str:
    return f"{path}.{child}" if path else child


def node_text(nodes: dict, path: str) -> str:
    return call_text(nodes[path])


def differences(student: dict, reference: dict, root: str = "", limit: int = 8) -> list[str]:
    """Where the student's tree departs from the reference's, outermost first."""
    lines: list[str] = []
    _compare(student, reference, root, lines)
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more differences"]
    return lines


def _compare(student: dict, reference: dict, path: str, lines: list[str]) -> None:
    label = path or "the model"
    s, r = student.get(path), reference.get(path)
    if s is None:
        lines.append(f"{label}: missing; the reference has {call_text(r)}")
        return
    if s["type"] != r["type"]:
        lines.append(f"{label}: {call_text(s)}; the reference has {call_text(r)}")
        return
    s_args, r_args = arguments(s, r), arguments(r)
    wrong = [k for k in r_args if k in s_args and not same(s_args[k], r_args[k])]
    if wrong:
        parts = ", ".join(f"{k}={s_args[k]!r} (reference: {r_args[k]!r})" for k in wrong)
        lines.append(f"{label}: {s['type']} with {parts}")
    for name, shape in r["params"].items():
        if name in s["params"] and s["params"][name] != shape and not wrong:
            lines.append(f"{label}.{name}: shape {s['params'][name]}; the reference has {shape}")
    s_children, r_children = s["children"], r["children"]
    for child in r_children:
        _compare(student, reference, _join(path, child), lines)
    for child in s_children:
        if child not in r_children:
            lines.append(f"{_join(path, child)}: {call_text(student[_join(path, child)])} is extra; "
                         "the reference has nothing there")
