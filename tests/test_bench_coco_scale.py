"""bench/coco_scale.py at a tiny size, kept from rotting: every stage runs, the last line has its format and sane
values, both COCO evaluators agree, and the generated dataset is deleted afterwards."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
LAST = (rf"coco_scale images=50 convert_s={NUMBER} cache_s={NUMBER} peak_rss_mb={NUMBER} eval_s={NUMBER} "
        rf"eval_fast_s={NUMBER} levels_csv_mb={NUMBER} plots_s={NUMBER}")


def coco_scale(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "coco_scale.py"), *args], capture_output=True,
                          text=True, env=env, timeout=600, cwd=ROOT)


def test_tiny_run_reports_every_stage_and_cleans_up(tmp_path):
    out = tmp_path / "work"
    done = coco_scale("--images", "50", "--eval-images", "20", "--steps-per-epoch", "40", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    match = re.fullmatch(LAST, lines[-1])
    assert match, lines[-1]
    convert_s, cache_s, peak, eval_s, eval_fast_s, csv_mb, plots_s = map(float, match.groups())
    assert 0 < peak < 8000 and all(0 <= t < 300 for t in (convert_s, cache_s, eval_s, eval_fast_s, plots_s))
    rows = 12 * 40 // 10 * 5  # epochs x windows of level_log_interval=10 steps x 5 levels
    assert 0.8 * rows * 60 / 2**20 < csv_mb < rows * 200 / 2**20  # 60-200 bytes a row
    stages = ("generate", "check", "convert", "cache", "loader", "eval pycocotools", "eval faster", "levels", "plots")
    for stage in stages:
        assert re.search(rf"^{stage} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}  ", done.stdout, re.M), stage
    assert re.search(r"^generate .* boxes=364 ", done.stdout, re.M)  # 50 x 860,001 / 118,287
    assert re.search(r"^check .* images=100 problems=0$", done.stdout, re.M)  # train and val: 50 each
    assert re.search(r"^loader .* batches=4 ", done.stdout, re.M)  # one pass over the 50 images
    diff = re.search(r"largest difference of the six numbers (\S+)$", lines[-2])
    assert diff and float(diff.group(1)) < 1e-9
    assert not out.exists()


def test_refuses_an_existing_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    done = coco_scale("--images", "10", "--out", str(tmp_path))
    assert done.returncode != 0 and "was not made by coco_scale.py" in done.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"
