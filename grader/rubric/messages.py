"""Rubric errors an instructor can act on: the YAML line, the item, what was found and
what is expected there (with a suggestion for a misspelt field or check kind).

    rubric.yaml:17: item 'c', treshold: unknown field; did you mean 'threshold'?
        Fields of an accuracy item: id, title, points, visibility, ...
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel

_EXPECTED_TYPE = {
    "float": "a number", "int": "a whole number", "string": "text", "bool": "true or false",
    "list": "a list, e.g. [a, b]", "dict": "a mapping (key: value)", "model": "a mapping (key: value)",
    "model_attributes": "a mapping (key: value)", "tuple": "a list, e.g. [a, b]",
}


class LocatedError(ValueError):
    """A rubric-wide rule broken at a known place (loc as pydantic writes it, without check tags)."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc = loc


def explain(error: dict, root, data: Any, where: str, kinds: dict, model: type[BaseModel]) -> str:
    """One pydantic error as `file:line: place: message`; `model` is the rubric's root model (passed in,
    so that this module does not import the one that imports it)."""
    raw = tuple(error["loc"])
    located = (error.get("ctx") or {}).get("error")
    if isinstance(located, LocatedError):
        raw = located.loc
    loc = _without_tags(raw, kinds)
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found") and loc and loc[0] == "items":
        loc = loc + ("check",) if kind == "union_tag_invalid" else loc
    line = line_of(root, loc)
    if kind in ("missing", "extra_forbidden"):  # the message names the field: place the parent
        place_loc = loc[:-1]
        line = line_of(root, loc) if kind == "extra_forbidden" else line_of(root, place_loc)
    else:
        place_loc = loc
    return f"{where}:{line}: {_place(place_loc, data)}: {_message(error, raw, loc, kinds, located, model)}"


def duplicate_keys(node, where: str) -> list[str]:
    """Keys given twice in one mapping: YAML keeps the last silently, which hides mistakes."""
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = getattr(key, "value", None)
            if name in seen:
                problems.append(f"{where}:{key.start_mark.line + 1}: '{name}' is given twice in this mapping "
                                f"(first at line {seen[name]}); the first would be ignored")
            else:
                seen[name] = key.start_mark.line + 1
            problems += duplicate_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            problems += duplicate_keys(value, where)
    return problems


# -- what went wrong ---------------------------------------------------------


def _message(error: dict, raw: tuple, loc: tuple, kinds: dict, located, model) -> str:
    kind, value = error["type"], error.get("input")
    ctx = error.get("ctx") or {}
    if located is not None or kind in ("value_error", "assertion_error"):
        return str(located or ctx.get("error") or error["msg"]).removeprefix("Value error, ")
    if kind == "union_tag_invalid":
        tag = ctx.get("tag", "")
        return f"'{tag}' is not a check kind{_did_you_mean(tag, list(kinds))}; the kinds are: {', '.join(kinds)}"
    if kind == "union_tag_not_found":
        return f"this item has no 'check:'; every item names its check kind, one of: {', '.join(kinds)}"
    if kind == "missing":
        field = raw[-1]
        owner = _model_at(raw[:-1], kinds, model)
        description = _description(owner, field)
        return f"missing '{field}'" + (f": {description}" if description else "")
    if kind == "extra_forbidden":
        field = str(raw[-1])
        owner = _model_at(raw[:-1], kinds, model)
        names = list(owner.model_fields) if owner else []
        allowed = ", ".join(n for n in names if not owner.model_fields[n].exclude) if owner else ""
        text = f"unknown field '{field}'{_did_you_mean(field, names)}"
        return f"{text}; the fields here are: {allowed}" if allowed else text
    if kind == "literal_error":
        expected = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{_show(value)} is not allowed; one of: {expected}"
    if kind == "string_pattern_mismatch":
        return f"{_show(value)} may contain only letters, digits, '_' and '-' ('.' too in item ids)"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(ctx.values()), "")
        words = {"greater_than": "more than", "greater_than_equal": "at least", "less_than": "less than",
                 "less_than_equal": "at most"}[kind]
        return f"{_show(value)} is too {'small' if kind.startswith('greater') else 'large'}: it must be {words} {bound}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} entr{'y' if ctx.get('min_length', 1) == 1 else 'ies'}"
    for prefix, expected in _EXPECTED_TYPE.items():
        if kind.startswith(prefix + "_"):
            return f"expected {expected}, found {_show(value)}"
    return error["msg"]


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True).strip()
        return text if len(text) < 60 else text[:57] + "..."
    return repr(value) if isinstance(value, str) else str(value)


def _description(model, field) -> str:
    if model is None or field not in getattr(model, "model_fields", {}):
        return ""
    return model.model_fields[field].description or ""


# -- where ---------------------------------------------------------------------


def _without_tags(loc: tuple, kinds: dict) -> tuple:
    """pydantic puts the check kind after an item's index (items, 2, 'accuracy', ...): drop it."""
    out = list(loc)
    if len(out) >= 3 and out[0] == "items" and isinstance(out[1], int) and out[2] in kinds:
        del out[2]
    return tuple(out)


def _place(loc: tuple, data: Any) -> str:
    if not loc:
        return "rubric"
    if loc[0] == "items" and len(loc) >= 2 and isinstance(loc[1], int):
        item = data.get("items")[loc[1]] if isinstance(data, dict) and isinstance(data.get("items"), list) \
            and loc[1] < len(data["items"]) else None
        ident = item.get("id") if isinstance(item, dict) else None
        head = f"item '{ident}'" if ident else f"item {loc[1] + 1} (no id)"
        rest = _dotted(loc[2:])
        return f"{head}, {rest}" if rest else head
    return _dotted(loc)


def _dotted(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def line_of(node, loc: tuple) -> int:
    """The YAML line of the deepest node along `loc` that exists (keys point at their own line)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
            continue
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
            continue
        break
    return line


# -- which model sits at a place ---------------------------------------------------


def _model_at(loc: tuple, kinds: dict, model):
    current: Any = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            current = _element(current)
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = _unwrap(current.model_fields[part].annotation)
        elif part in kinds and _is_union(current):
            current = kinds[part].Item
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation):
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 and len(options) == 1 else annotation
    return annotation


def _element(annotation):
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (list, tuple):
        return _unwrap(typing.get_args(annotation)[0])
    return None


def _is_union(annotation) -> bool:
    return typing.get_origin(_unwrap(annotation)) in (typing.Union, types.UnionType)
