"""Result-table rows for the COCO numbers: Markdown and CSV, in percent with one decimal, as papers print AP."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from umop_yolo.eval.coco_eval import METRICS


def _percent(values: Mapping[str, float]) -> list[str]:
    """Each metric as a percentage with one decimal ('-' where pycocotools reports -1: no ground truth)."""
    return [f"{100 * values[m]:.1f}" if values[m] >= 0 else "-" for m in METRICS]


def markdown_table(label_header: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table with one row per label (e.g. model name or class name) and the six COCO columns."""
    lines = [f"| {label_header} | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(_percent(values)) + " |" for label, values in rows.items()]
    return "\n".join(lines) + "\n"


def csv_table(label_header: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    """The same table as CSV (labels quoted, since class names may contain commas)."""
    lines = [",".join([label_header, *METRICS])]
    lines += [",".join([f'"{label}"', *_percent(values)]) for label, values in rows.items()]
    return "\n".join(lines) + "\n"


def write_tables(save_dir: Path, stem: str, label_header: str, rows: Mapping[str, Mapping[str, float]]) -> list[Path]:
    """Write `<stem>.md` and `<stem>.csv` into `save_dir` and return their paths."""
    paths = [save_dir / f"{stem}.md", save_dir / f"{stem}.csv"]
    paths[0].write_text(markdown_table(label_header, rows), encoding="utf-8")
    paths[1].write_text(csv_table(label_header, rows), encoding="utf-8")
    return paths
