"""umop_yolo.atomic: the one atomic file writer of the package (dataset cache, COCO ground truth, run logs)."""

import os
from pathlib import Path

import pytest

from umop_yolo import atomic
from umop_yolo.atomic import replace_file, write_text_atomic


def test_writes_through_a_temporary_file_with_a_plain_writes_permissions(tmp_path):
    path = write_text_atomic(tmp_path / "new" / "folder" / "data.yaml", "path: x\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("path: x\n")
    assert path.read_text(encoding="utf-8") == "path: x\n"
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not mkstemp's 0600
    assert os.listdir(path.parent) == ["data.yaml"]


def test_a_failed_replace_keeps_the_old_file_and_no_temporary_file(tmp_path):
    (tmp_path / "results.csv").mkdir()  # os.replace of a file over a folder fails
    with pytest.raises(OSError):
        write_text_atomic(tmp_path / "results.csv", "epoch\n", prefix=".partial-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_the_temporary_file_carries_the_prefix(tmp_path, monkeypatch):
    seen: list[str] = []

    def killed_before_rename(src: Path, dst: Path, durable: bool) -> None:
        seen.extend(os.listdir(src.parent))
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "replace_file", killed_before_rename)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(tmp_path / "results.csv", "epoch\n", prefix=".partial-")
    assert len(seen) == 1 and seen[0].startswith(".partial-results.csv.")  # what remove_leftovers globs for
    assert os.listdir(tmp_path) == []


def test_durable_replace_syncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced: list[Path] = []
    monkeypatch.setattr(atomic, "_fsync", synced.append)
    (tmp_path / "tmp").write_text("new")
    replace_file(tmp_path / "tmp", tmp_path / "last.pt", durable=True)
    assert (tmp_path / "last.pt").read_text() == "new"
    assert synced == [tmp_path / "tmp", tmp_path] if os.name == "posix" else [tmp_path / "tmp"]
    synced.clear()
    (tmp_path / "tmp").write_text("cache")
    replace_file(tmp_path / "tmp", tmp_path / "cache.json")
    assert synced == []
