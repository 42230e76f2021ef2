"""Medians of runs and Markdown tables (readable in a terminal, pasted as is into docs/benchmarks.md)."""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence


def median_fields(runs: Sequence[tuple[float, ...]]) -> tuple[float, ...]:
    """Field by field median of several runs (each a tuple of the same length)."""
    return tuple(statistics.median(run[i] for run in runs) for i in range(len(runs[0])))


def percent(fraction: float) -> str:
    """A CPU share, or '-' where it was not measured (NaN: a broker we did not start)."""
    return "-" if math.isnan(fraction) else f"{fraction:.0%}"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> None:
    """A Markdown table; `align` is one letter per column, 'l' or 'r' (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    print(line(header))
    print(
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if a == "r" else "-" * (w + 2) for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    for row in rows:
        print(line(row))
    print(flush=True)


def progress(text: str) -> None:
    """One line per run on stderr, so that stdout stays the tables alone."""
    print(text, file=sys.stderr, flush=True)
