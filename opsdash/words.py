"""Numbers and stored values as the page's language writes them (shared by the template tags
and the action registry's result wording)."""

from __future__ import annotations

from typing import Any

from django.utils.formats import number_format


def number(value: Any) -> str:
    """An integer or decimal grouped the way the page's language writes it (1,234 / 1.234)."""
    if value is None or value == "":
        return "–"
    try:
        return number_format(value, force_grouping=True)
    except (TypeError, ValueError):
        return str(value)


def megabytes(n: int | float) -> str:
    """Bytes as decimal megabytes with one decimal (8,060,000: "8.1"); number_format would cut
    the decimals off, so round first."""
    return number_format(round(n / 1_000_000, 1), 1, force_grouping=True)
