"""bench/gpu_check.sh, the one command for a GPU machine, kept from rotting: its `--device cpu --tiny` run writes the
same Markdown block as on CUDA (headings, machine, every ratio line, all finite), and it stops in one line when the
GPU, Ultralytics or a wheels folder is missing."""

import json
import math
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
NUMBER = r"(-?[0-9.]+(?:e[-+]?\d+)?|nan|inf|-inf)"


def gpu_check(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the script as a user would, with this interpreter and one CPU thread."""
    full_env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def tiny_block(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.md"
    return gpu_check("--device", "cpu", "--tiny", "--out", str(out)), out


def finite(value: str) -> bool:
    return math.isfinite(float(value))


def test_tiny_cpu_run_writes_the_block_to_stdout_and_the_file(tiny_block):
    done, out = tiny_block
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_text() == done.stdout
    raw = json.loads(out.with_suffix(".json").read_text())
    assert raw["mode"] == "tiny" and raw["loss_overhead"] and raw["throughput"]


def test_block_has_the_headings_machine_and_exact_command(tiny_block):
    text = tiny_block[0].stdout
    lines = text.splitlines()
    assert lines[0].startswith("### GPU check: CPU, ")
    for heading in ("#### Loss overhead (bench/loss_overhead.py)",
                    "#### Training throughput, AMP (bench/step_throughput.py)",
                    "#### Against the goals (measured, not asserted)"):
        assert heading in lines, heading
    assert f"- Command: `bash bench/gpu_check.sh --device cpu --tiny --out {tiny_block[1]}`" in text
    for item in ("- GPU: none used (--device cpu)", "- CPU: ", "- Software: Python ", "torch ", "Ultralytics ",
                 "- Wall time: "):
        assert item in text, item
    for script in ("loss_overhead", "step_throughput"):
        assert f"`python bench/{script}.py --device cpu " in text, script


def test_every_loss_overhead_pair_has_a_finite_ratio_line(tiny_block):
    text = tiny_block[0].stdout
    pattern = (rf"^- loss overhead, (.+?) (\S+) -> (\S+): step ratio {NUMBER}, loss ratio {NUMBER}, memory ratio "
               rf"{NUMBER} \(goals <= 1.02, <= 1.15, <= 1.02\); syncs per step (\d+) -> (\d+), CUDA sync warnings "
               r"n/a on the CPU \(goal: none added\)$")
    found = {(m[0], m[1], m[2]): m[3:6] for m in re.findall(pattern, text, re.M)}
    expected = {("YOLOv8n", "stock", "umop=true"), ("YOLOv8n", "umop=false", "umop=true"),
                ("YOLOv8n", "stock", "umop=false")}
    for model in ("RetinaNet R-18", "ATSS R-18"):
        expected |= {(model, "umop=false", "umop=true"), (model, "focal", "umop=true"), (model, "focal", "umop=false")}
    assert set(found) == expected
    assert all(finite(v) for ratios in found.values() for v in ratios)


def test_throughput_lines_give_images_per_second_and_ratios_for_both_detectors(tiny_block):
    text = tiny_block[0].stdout
    atss = re.search(rf"^- throughput, ATSS R-18, 64 px, batch 2, AMP off: umop=true {NUMBER} images/s \(goal >= 30; "
                     rf"MMDetection: about 10 per V100\), focal {NUMBER}, umop=false {NUMBER}; time ratio {NUMBER} vs "
                     rf"focal, {NUMBER} vs umop=false \(goal <= 1.02\); peak memory {NUMBER} MiB, memory ratio "
                     rf"{NUMBER} vs focal, {NUMBER} vs umop=false$", text, re.M)
    yolo = re.search(rf"^- throughput, YOLOv8n, 64 px, batch 2, AMP off: umop=true {NUMBER} images/s, stock {NUMBER}, "
                     rf"umop=false {NUMBER}; time ratio {NUMBER} vs stock, {NUMBER} vs umop=false \(goal <= 1.02\); "
                     rf"peak memory {NUMBER} MiB, memory ratio {NUMBER} vs stock, {NUMBER} vs umop=false$", text, re.M)
    assert atss and yolo, text
    for match in (atss, yolo):
        values = [float(v) for v in match.groups()]
        assert all(math.isfinite(v) and v > 0 for v in values)


def test_every_ratio_in_the_block_is_finite_and_no_section_failed(tiny_block):
    text = tiny_block[0].stdout
    ratios = re.findall(rf"ratio {NUMBER}", text)
    assert len(ratios) >= 9 * 3 + 2 * 2
    assert all(finite(r) for r in ratios)
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert not any(re.search(r"\b(nan|inf)\b", row) for row in table_rows)
    assert "failed" not in text


def test_without_cuda_it_stops_in_one_line_naming_the_cpu_command(tmp_path):
    done = gpu_check("--out", str(tmp_path / "x.md"), env={"CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "sees no CUDA device" in done.stderr and "bash bench/gpu_check.sh --device cpu --tiny" in done.stderr
    assert not (tmp_path / "x.md").exists()


def fake_ultralytics_wheel(folder: Path) -> Path:
    """A wheel whose `ultralytics` package fails to import: shows which copy the script imports."""
    folder.mkdir()
    wheel = folder / "ultralytics-0.0.0-py3-none-any.whl"
    info = "ultralytics-0.0.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("ultralytics/__init__.py", "raise ImportError('the wheel from --wheels')\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: ultralytics\nVersion: 0.0.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return folder


def test_wheels_are_installed_ahead_of_site_packages_and_a_missing_ultralytics_is_one_line(tmp_path):
    done = gpu_check("--device", "cpu", "--tiny", "--wheels", str(fake_ultralytics_wheel(tmp_path / "whl")),
                     "--out", str(tmp_path / "x.md"), timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("gpu_check: cannot import ultralytics (the wheel from --wheels)")
    assert "--wheels DIR" in done.stderr


def test_a_missing_wheels_folder_is_one_line(tmp_path):
    done = gpu_check("--wheels", str(tmp_path / "none"), timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "gpu_check: --wheels needs a folder of .whl files"
