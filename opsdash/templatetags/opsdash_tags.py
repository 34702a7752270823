from __future__ import annotations

from typing import Any

import orjson
from django import template

register = template.Library()

FINDING_KEYS = {"code", "severity", "message"}


@register.simple_tag
def qs(filters: Any, **changes: Any) -> str:
    """The query string ("?...") of the current filters with ``changes`` applied."""
    query = filters.as_query(**{key: "" if value is None else str(value) for key, value in changes.items()})
    return f"?{query}" if query else "?"


@register.filter
def finding_detail(finding: dict[str, Any]) -> list[tuple[str, str]]:
    """A finding's machine detail as (key, text) pairs, lists and objects as compact JSON."""
    out = []
    for key, value in finding.items():
        if key in FINDING_KEYS:
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        out.append((key, text))
    return out
