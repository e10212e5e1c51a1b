"""Questions as students name them: `q6`, `Question 6`, `6` for the items of Question 6.

A rubric item's title starts with its question ("Q6 three-layer ConvNet ...", "Q3-4
ThreeLayerConvNet ..."), which is how the handout numbers it; an alias is the items whose
title starts with that question's number (a range "Q3-4" counts for 3 and 4).
"""

from __future__ import annotations

import re

_ALIAS = re.compile(r"^\s*(?:q|question)?\s*(\d+)\s*$", re.IGNORECASE)
_TITLE = re.compile(r"^\s*Q(\d+)(?:\s*-\s*(\d+))?\b", re.IGNORECASE)


def question_number(text: str) -> int | None:
    """6 for 'q6', 'Q6', 'Question 6', 'question6' and '6'; None for anything else."""
    match = _ALIAS.match(str(text))
    return int(match.group(1)) if match else None


def items_of_question(items, number: int) -> list[str]:
    """The ids of the items whose title names question `number` ("Q6 ...", "Q3-4 ...")."""
    chosen = []
    for item in items:
        match = _TITLE.match(item.title or "")
        if match:
            first = int(match.group(1))
            last = int(match.group(2) or first)
            if first <= number <= last:
                chosen.append(item.id)
    return chosen


def resolve(items, names: list[str]) -> list[str]:
    """Item ids for names that are item ids or question aliases, in the rubric's order;
    a name that is neither is kept as it is (the caller says it is unknown)."""
    known = {item.id for item in items}
    wanted: list[str] = []
    for name in names:
        number = None if name in known else question_number(name)
        wanted += items_of_question(items, number) if number is not None and items_of_question(items, number) \
            else [name]
    return list(dict.fromkeys(wanted))
