"""Result-table rows for the COCO numbers: Markdown and CSV in percent with one decimal, as papers print AP, and the
printed table's rows. A size range without ground truth (nan) is "-" in print and Markdown, an empty CSV field. Class
names may hold any character: CSV quotes them (csv module), Markdown escapes `|` and line breaks, print and plots show
control characters escaped (`printable`)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from umop_yolo.eval.coco_eval import METRICS


def _percent(values: Mapping[str, float], no_data: str) -> list[str]:
    """Each metric as a percentage with one decimal (`no_data` where it is nan: no ground truth)."""
    return [f"{100 * values[m]:.1f}" if math.isfinite(values[m]) else no_data for m in METRICS]


def printable(label: str) -> str:
    """`label` on one line: control characters (line breaks, tabs ...) written as Python escapes (`\\n`)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(label))


def _markdown_cell(label: str) -> str:
    """`label` inside one Markdown table cell: `|` escaped, line breaks as <br>."""
    text = str(label).replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\n", "<br>")


def text_row(label: str, values: Iterable[float]) -> str:
    """One row of the printed table: the label in 22 characters, then 11 per value (3 significant digits or "-")."""
    return f"{printable(label)[:22]:>22}" + "".join(f"{v:11.3g}" if math.isfinite(v) else f"{'-':>11}" for v in values)


def markdown_table(label_header: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table with one row per label (e.g. model name or class name) and the six COCO columns."""
    lines = [f"| {label_header} | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    lines += [f"| {_markdown_cell(label)} | " + " | ".join(_percent(values, "-")) + " |"
              for label, values in rows.items()]
    return "\n".join(lines) + "\n"


def csv_table(label_header: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    """The same table as CSV (RFC 4180: a label with commas, quotes or line breaks is quoted, its quotes doubled)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([label_header, *METRICS])
    writer.writerows([label, *_percent(values, "")] for label, values in rows.items())
    return out.getvalue()


def write_tables(save_dir: Path, stem: str, label_header: str, rows: Mapping[str, Mapping[str, float]]) -> list[Path]:
    """Write `<stem>.md` and `<stem>.csv` into `save_dir` and return their paths."""
    paths = [save_dir / f"{stem}.md", save_dir / f"{stem}.csv"]
    paths[0].write_text(markdown_table(label_header, rows), encoding="utf-8")
    paths[1].write_text(csv_table(label_header, rows), encoding="utf-8")
    return paths
