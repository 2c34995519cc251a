"""The small JSONPath subset webhook mappings use: ``$.a.b`` and ``$.items[0].id``."""

from __future__ import annotations

import re
from typing import Any

_STEP = re.compile(r"\.([A-Za-z0-9_$@-]+)|\[(\d{1,6})\]")
_MISSING = object()


def parse(path: str) -> tuple[str | int, ...]:
    """The steps of ``path``; ValueError saying what is wrong when it is not in the subset."""
    if not path.startswith("$"):
        raise ValueError("must start with '$', e.g. $.user.id")
    steps: list[str | int] = []
    at = 1
    while at < len(path):
        match = _STEP.match(path, at)
        if match is None:
            raise ValueError(
                f"unexpected {path[at:]!r} at position {at}: use '.name' and '[index]' steps, "
                "e.g. $.items[0].id"
            )
        name, index = match.groups()
        steps.append(name if name is not None else int(index))
        at = match.end()
    if not steps:
        raise ValueError("must name a field, e.g. $.user.id")
    return tuple(steps)


def find(document: Any, steps: tuple[str | int, ...]) -> Any:
    """The value at ``steps`` in ``document``; ``None`` when there is none."""
    node = document
    for step in steps:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and step < len(node) else _MISSING
        else:
            node = node.get(step, _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING:
            return None
    return node
