"""The package's import layers (.importlinter): no module imports one of a higher layer, and the
averaging rules import neither the engines nor the configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    found = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(found).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return found


def test_import_layers_are_kept():
    done = subprocess.run([_lint_imports()], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: a copy of the config with an upward import (config -> runner) is reported."""
    config = (ROOT / ".importlinter").read_text()
    package = tmp_path / "grawa_sim"
    shutil.copytree(ROOT / "grawa_sim", package, ignore=shutil.ignore_patterns("__pycache__"))
    stats = package / "core" / "stats.py"
    stats.write_text(stats.read_text() + "\nimport grawa_sim.engine.runner  # noqa\n")
    (tmp_path / ".importlinter").write_text(config)
    done = subprocess.run([_lint_imports()], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)})
    assert done.returncode != 0 and "grawa_sim.core.stats -> grawa_sim.engine.runner" in done.stdout
