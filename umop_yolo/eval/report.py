"""Result-table rows for the COCO numbers: Markdown and CSV in percent with one decimal, as papers print AP, and the
printed table's rows. A size range without ground truth (nan) is "-" in print and Markdown, an empty CSV field."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from umop_yolo.eval.coco_eval import METRICS


def _percent(values: Mapping[str, float], no_data: str) -> list[str]:
    """Each metric as a percentage with one decimal (`no_data` where it is nan: no ground truth)."""
    return [f"{100 * values[m]:.1f}" if math.isfinite(values[m]) else no_data for m in METRICS]


def text_row(label: str, values: Iterable[float]) -> str:
    """One row of the printed table: the label in 22 characters, then 11 per value (3 significant digits or "-")."""
    return f"{label[:22]:>22}" + "".join(f"{v:11.3g}" if math.isfinite(v) else f"{'-':>11}" for v in values)


def markdown_table(label_header: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table with one row per label (e.g. model name or class name) and the six COCO columns."""
    lines = [f"| {label_header} | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(_percent(values, "-")) + " |" for label, values in rows.items()]
    return "\n".join(lines) + "\n"


def csv_table(label_header: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    """The same table as CSV (labels quoted, since class names may contain commas)."""
    lines = [",".join([label_header, *METRICS])]
    lines += [",".join([f'"{label}"', *_percent(values, "")]) for label, values in rows.items()]
    return "\n".join(lines) + "\n"


def write_tables(save_dir: Path, stem: str, label_header: str, rows: Mapping[str, Mapping[str, float]]) -> list[Path]:
    """Write `<stem>.md` and `<stem>.csv` into `save_dir` and return their paths."""
    paths = [save_dir / f"{stem}.md", save_dir / f"{stem}.csv"]
    paths[0].write_text(markdown_table(label_header, rows), encoding="utf-8")
    paths[1].write_text(csv_table(label_header, rows), encoding="utf-8")
    return paths
