"""CI (.ci/run) runs the README's test command, read from README.md, in a fresh virtual environment that sees no
other packages: CI cannot pass where a newcomer following the README fails."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from umop_yolo.cfg import PACKAGE_DIR

REPO = PACKAGE_DIR.parent
CI = REPO / ".ci" / "run"
# Runs inside the CI venv: where it is, and whether it sees this environment's packages (torch is in every one here).
PROBE = ("python -c \"import sys, importlib.util as u; print(sys.prefix); print(sys.prefix != sys.base_prefix); "
         "print(u.find_spec('torch') is not None)\" && echo ran")


def code_lines(readme: str) -> list[str]:
    """The lines inside README's fenced code blocks, stripped."""
    lines, inside = [], False
    for line in readme.splitlines():
        if line.strip().startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line.strip())
    return lines


def repo_with_readme(tmp_path: Path, readme: str) -> Path:
    """A folder holding .ci/run and a README.md, as the repo would."""
    (tmp_path / ".ci").mkdir(parents=True)
    shutil.copy2(CI, tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(readme)
    return tmp_path / ".ci" / "run"


def test_ci_runs_the_readmes_test_command():
    readme_command = next(line for line in code_lines((REPO / "README.md").read_text()) if "python -m pytest" in line)
    assert "pip install" in readme_command and '".[test]"' in readme_command  # it installs what the tests need
    printed = subprocess.run([CI, "--print-command"], capture_output=True, text=True, check=True).stdout
    assert printed == readme_command + "\n"


def test_ci_fails_where_the_readme_has_no_test_command(tmp_path):
    ci = repo_with_readme(tmp_path, "# x\n\n```bash\npip install -e .\n```\n\nRun python -m pytest (prose).\n")
    proc = subprocess.run([ci], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ".ci/run: README.md has no test command (a code-block line running 'python -m pytest')\n"


@pytest.mark.slow  # makes a venv
def test_ci_runs_the_command_in_a_fresh_venv_that_sees_no_other_packages(tmp_path):
    ci = repo_with_readme(tmp_path / "repo", f"# x\n\n```bash\n{PROBE}  # python -m pytest\n```\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # run from this (venv's) python, as a user would
    proc = subprocess.run([ci], capture_output=True, text=True, env={**env, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    prefix, in_venv, sees_torch, ran = proc.stdout.splitlines()[-4:]
    assert Path(prefix).parent == tmp_path and Path(prefix).name.startswith("umop-ci-venv.")
    assert (in_venv, sees_torch, ran) == ("True", "False", "ran")
    assert not Path(prefix).exists()  # removed afterwards
