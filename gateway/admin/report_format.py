"""Reading report queries and writing their answers as JSON, CSV or a table."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence

from contracts.errors import InvalidRequest, RequestError
from gateway.observe.reports import DIMENSIONS, FIELDS, KEEP_S
from gateway.observe.variant_report import ARM_COLUMNS, flat

__all__ = ["ARM_COLUMNS", "columns", "flat", "parse_by", "parse_since", "to_csv", "to_table"]

DURATION = re.compile(r"([0-9]{1,9})([smhd]?)")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, longest_s: float = KEEP_S) -> float:
    """``90m``, ``24h``, ``7d`` or seconds; at most ``longest_s``, what the report keeps."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidRequest(f"since={text!r}: want a duration such as 90m, 24h or 7d", param="since")
    since_s = int(match.group(1)) * UNIT_S[match.group(2)]
    if since_s > longest_s:
        raise RequestError(
            f"since={text!r} reaches past what the report keeps ({longest_s // 86400:.0f}d)",
            param="since",
            code="since_out_of_range",
        )
    return since_s


def parse_by(text: str) -> list[str]:
    by = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or not by:
        raise InvalidRequest(f"by={text!r}: choose from {', '.join(DIMENSIONS)}", param="by")
    return by


def columns(by: list[str]) -> list[str]:
    return [*by, *FIELDS, "hit_ratio"]


def to_csv(rows: list[dict[str, object]], by: list[str], columns_of: Sequence[str] | None = None) -> str:
    """The rows as CSV: the cost report's columns for ``by``, or ``columns_of`` when given."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns_of or columns(by)), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_table(rows: list[dict[str, object]], by: list[str], shown_columns: Sequence[str] | None = None) -> str:
    shown = (
        list(shown_columns)
        if shown_columns is not None
        else [
            *by,
            "requests",
            "hits",
            "misses",
            "hit_ratio",
            "saved_tokens",
            "saved_usd",
            "cost_usd",
            "routing_saved_usd",
        ]
    )
    cells = [shown] + [[_cell(row.get(c)) for c in shown] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(shown))]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(r, widths, strict=True)) for r in cells)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
    return str(value)
