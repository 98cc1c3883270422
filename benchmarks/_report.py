"""Figures (a sample list with its median, spread and target) and the printed table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Figure", "format_table"]

Unit = Literal["s", "ms", "x", "ratio", "us", "rec/s", "MB", "count"]
Op = Literal[">=", "<=", "<"]


@dataclass
class Figure:
    """One row of the table: a figure's samples, summarised, with an optional target."""

    case: str
    name: str
    unit: Unit
    samples: list[float]
    #: ``(op, threshold)``: the median must satisfy ``median op threshold``.
    target: tuple[Op, float] | None = None
    #: Whether every sample must meet the target ("never above"), not only the median.
    every: bool = False
    note: str = ""
    median: float = field(init=False)
    low: float = field(init=False)
    high: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError(f"{self.case}/{self.name}: no samples")
        self.median = statistics.median(self.samples)
        self.low = min(self.samples)
        self.high = max(self.samples)

    @property
    def met(self) -> bool | None:
        """Whether the median meets the target (``None``: no target, information only)."""
        if self.target is None:
            return None
        op, threshold = self.target
        values = self.samples if self.every else [self.median]
        if op == ">=":
            return all(value >= threshold for value in values)
        if op == "<=":
            return all(value <= threshold for value in values)
        return all(value < threshold for value in values)

    def as_json(self) -> dict[str, Any]:
        """Everything about the figure, samples included."""
        return {
            "case": self.case,
            "figure": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "samples": self.samples,
            "target": _target_text(self),
            "met": self.met,
            "note": self.note,
        }


def _fmt(value: float, unit: Unit) -> str:
    if math.isnan(value):
        return "nan"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "x":
        return f"{value:.1f}x"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "us":
        return f"{value:.1f} us"
    if unit == "rec/s":
        return f"{value / 1e3:,.0f}k rec/s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:g}"


def _target_text(figure: Figure) -> str:
    if figure.target is None:
        return "-"
    op, threshold = figure.target
    shown = _fmt(threshold, figure.unit)
    return f"{op} {shown}" + (" every run" if figure.every else "")


def format_table(figures: Sequence[Figure]) -> str:
    """The table printed at the end: case, figure, median, spread, target, met?"""
    header = ("case", "figure", "median", "spread (min-max)", "target", "met?")
    rows = [header]
    for figure in figures:
        met = figure.met
        rows.append(
            (
                figure.case,
                figure.name,
                _fmt(figure.median, figure.unit),
                f"{_fmt(figure.low, figure.unit)} - {_fmt(figure.high, figure.unit)}",
                _target_text(figure),
                "-" if met is None else ("yes" if met else "NO  <-- MISSED"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
