"""Every notebook executes headless in quick mode and saves its figure (into a temp folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grawa_sim import notebook_runner

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_and_saves_figures(path, tmp_path):
    figures = tmp_path / "figures"
    notebook_runner.execute(path, quick=True, figures=figures, results=tmp_path / "results", timeout=600)
    pngs = list(figures.glob("*.png"))
    assert pngs and all(p.stat().st_size > 10_000 for p in pngs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")


def test_notebook_failure_is_reported(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('boom')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(Exception, match="boom"):
        notebook_runner.execute(path, quick=True, figures=tmp_path)
