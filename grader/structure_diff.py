"""Comparing what two pieces of code build, in words a student can act on.

Both sides are descriptions from `introspect.describe`: module path -> node.  The reference's
side is an `Expected`, in one of two forms:

  plain   the instructor's grading: a message may state the reference's values
          ("stride=[1, 1] (reference: [2, 2])");
  sealed  a handout, and wherever students read messages before the deadline (`seal`): every
          value is a salted digest, so a message says *which* setting of *which* of the
          student's layers differs, never what it should be.

The digests stop answers from being read off a handout.  They do not stop a student from
trying values until a check passes: that is what a self-check is for.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from grader.introspect import call_text


def normalize(value: Any) -> Any:
    """(3, 3) and 3 mean the same kernel; True and 1 the same flag."""
    if isinstance(value, tuple):
        value = list(value)
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
    names = None
    if reference_node is not None and not reference_node.get("builtin") and reference_node.get("init"):
        names = list(reference_node["init"])
    return _arguments(node, names)


def _arguments(node: dict, names: list[str] | None) -> dict[str, Any]:
    if node.get("builtin") or node.get("init") is None:
        return dict(node.get("settings") or {})
    values = dict(node["init"])
    if names is not None and set(values) != set(names):
        return {names[i]: v for i, v in enumerate(values.values()) if i < len(names)}
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


# -- the reference's side: plain or sealed ---------------------------------------------


def fingerprint(salt: str, value: Any, *, exact: bool = False) -> str:
    """A salted digest of a value; `exact` keeps [3, 3] apart from 3 (weight shapes)."""
    plain = value if exact else normalize(value)
    text = json.dumps(plain, sort_keys=True, default=repr)
    return hashlib.sha256(f"{salt}\0{text}".encode()).hexdigest()[:20]


def seal(nodes: dict, salt: str) -> dict:
    """A description with every type, argument and weight shape replaced by its digest: what
    a handout ships, from which no value can be read but the student's can be compared."""
    return {path: {"type": fingerprint(salt, node["type"]),
                   "named": not node.get("builtin") and bool(node.get("init")),
                   "args": {k: fingerprint(salt, v) for k, v in arguments(node).items()},
                   "params": {k: fingerprint(salt, v, exact=True) for k, v in node["params"].items()},
                   "children": list(node["children"])}
            for path, node in nodes.items()}


class Expected:
    """What the student's layers are compared with.  `Expected(nodes)` is plain (messages may
    quote it); `Expected(sealed_nodes, salt)` is sealed (they may not)."""

    def __init__(self, nodes: dict, salt: str | None = None):
        self.nodes, self.salt = nodes, salt
        self.sealed = salt is not None

    def __contains__(self, path: str) -> bool:
        return path in self.nodes

    def children(self, path: str) -> list[str]:
        return list(self.nodes[path]["children"])

    def text(self, path: str) -> str:
        """The reference's layer as the call that builds it: plain only."""
        assert not self.sealed, "a sealed description has no text"
        return call_text(self.nodes[path])

    def type_name(self, path: str) -> str:
        assert not self.sealed, "a sealed description has no type name"
        return self.nodes[path]["type"]

    def args(self, path: str) -> dict[str, Any]:
        """The reference's arguments (plain values, or digests when sealed)."""
        node = self.nodes[path]
        return dict(node["args"]) if self.sealed else arguments(node)

    def student_args(self, s_node: dict, path: str) -> dict[str, Any]:
        """The student's arguments, named as the reference names them."""
        node = self.nodes[path]
        if self.sealed:
            return _arguments(s_node, list(node["args"]) if node["named"] else None)
        return arguments(s_node, node)

    def matches(self, got: Any, expected: Any, *, exact: bool = False) -> bool:
        """The student's value `got` against one of this description's values."""
        if self.sealed:
            return fingerprint(self.salt, got, exact=exact) == expected
        return got == expected if exact else same(got, expected)

    def same_type(self, s_node: dict, path: str) -> bool:
        return self.matches(s_node["type"], self.nodes[path]["type"], exact=True)

    def wrong_args(self, s_node: dict, path: str) -> list[str]:
        """The reference's arguments the student's layer has, with another value."""
        mine, theirs = self.student_args(s_node, path), self.args(path)
        return [k for k in theirs if k in mine and not self.matches(mine[k], theirs[k])]

    def same_subtree(self, student: dict, s_path: str, r_path: str) -> bool:
        """Same types and arguments all the way down (weight shapes follow from them)."""
        s_node = student[s_path]
        if not self.same_type(s_node, r_path):
            return False
        if set(self.student_args(s_node, r_path)) != set(self.args(r_path)) or self.wrong_args(s_node, r_path):
            return False
        mine, theirs = s_node["children"], self.children(r_path)
        if len(mine) != len(theirs):
            return False
        return all(self.same_subtree(student, _join(s_path, a), _join(r_path, b)) for a, b in zip(mine, theirs))


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def differences(student: dict, reference: "Expected | dict", root: str = "", limit: int = 8) -> list[str]:
    """Where the student's tree departs from the reference's, outermost first."""
    expected = reference if isinstance(reference, Expected) else Expected(reference)
    lines: list[str] = []
    _compare(student, expected, root, lines)
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more differences"]
    return lines


def _compare(student: dict, expected: Expected, path: str, lines: list[str]) -> None:
    label = path or "the model"
    s = student.get(path)
    if s is None:
        lines.append(f"{label}: missing; " + ("the reference has a layer there" if expected.sealed
                                              else f"the reference has {expected.text(path)}"))
        return
    if not expected.same_type(s, path):
        lines.append(f"{label}: a {s['type']}; the reference has another kind of layer there" if expected.sealed
                     else f"{label}: {call_text(s)}; the reference has {expected.text(path)}")
        return
    wrong = expected.wrong_args(s, path)
    if wrong and expected.sealed:
        lines.append(f"{label}: the {_and(wrong)} of this {s['type']} {'is' if len(wrong) == 1 else 'are'} "
                     "not what the question needs")
    elif wrong:
        mine, theirs = expected.student_args(s, path), expected.args(path)
        parts = ", ".join(f"{k}={mine[k]!r} (reference: {theirs[k]!r})" for k in wrong)
        lines.append(f"{label}: {s['type']} with {parts}")
    for name, shape in expected.nodes[path]["params"].items():
        if name in s["params"] and not expected.matches(s["params"][name], shape, exact=True) and not wrong:
            lines.append(f"{label}.{name}: shape {s['params'][name]}; " +
                         ("not the shape the question needs" if expected.sealed else f"the reference has {shape}"))
    r_children = expected.children(path)
    for child in r_children:
        _compare(student, expected, _join(path, child), lines)
    for child in s["children"]:
        if child not in r_children:
            extra = student[_join(path, child)]
            what = f"a {extra['type']}" if expected.sealed else call_text(extra)
            lines.append(f"{_join(path, child)}: {what} is extra; the reference has nothing there")
