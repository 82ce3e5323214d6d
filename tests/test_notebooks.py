"""Every notebook executes headless in quick mode and saves its figures as PNG and PDF (into a temp
folder); the experiment notebooks set their knobs in the first code cell and show their figures inline."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from pathlib import Path

import pytest

from grawa_sim.experiments import notebook_runner
from grawa_sim.experiments import presets as experiments

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
# notebook -> (the builder its first code cell calls: a function of experiments.presets, or '<module>.<function>'
# of grawa_sim.experiments; {knob variable: builder keyword})
KNOBS = {
    "01_quickstart.ipynb": ("quickstart_configs", {"SEEDS": "seeds", "STEPS": "steps", "WORKERS": "workers",
                                                   "TAU": "tau", "ALGORITHMS": "algorithms"}),
    "02_time_budget.ipynb": ("time_budget.configs", {"SEEDS": "seeds", "BUDGET": "budget", "WORKERS": "workers",
                                                     "ALGORITHMS": "algorithms", "CLOCKS": "clocks",
                                                     "STRAGGLERS": "stragglers", "SCHEDULES": "schedules"}),
    "03_noniid.ipynb": ("noniid.configs", {"SEEDS": "seeds", "STEPS": "steps", "WORKERS": "workers",
                                           "ALGORITHMS": "algorithms", "ALPHAS": "alphas"}),
    "06_scalability.ipynb": ("scalability.configs", {"SEEDS": "seeds", "BUDGET": "budget", "WORKERS": "workers",
                                                     "ALGORITHMS": "algorithms", "LATENCY": "latency"}),
    "07_communication.ipynb": ("communication.configs", {"SEEDS": "seeds", "BUDGET": "budget", "WORKERS": "workers",
                                                         "TAUS": "taus", "PULLS": "pulls", "ALGORITHMS": "algorithms",
                                                         "LATENCY": "latency"}),
}


def builder_function(builder: str):
    """The function a KNOBS entry names."""
    if "." not in builder:
        return getattr(experiments, builder)
    module, name = builder.rsplit(".", 1)
    return getattr(importlib.import_module(f"grawa_sim.experiments.{module}"), name)
INLINE = [p.name for p in NOTEBOOKS]  # every notebook shows each saved figure inline (the saved PNG)


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def assigned(source: str) -> set[str]:
    """The names a cell binds at its top level (x = ..., x: T = ..., x += ...)."""
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def builder_call(source: str, builder: str) -> ast.Call:
    *module, name = builder.split(".")
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == name and (not module or getattr(n.func.value, "id", None) == module[0])]
    assert len(calls) == 1, f"the first code cell calls {builder} once"
    return calls[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_and_saves_figures(path, tmp_path):
    figures = tmp_path / "figures"
    nb = notebook_runner.execute(path, quick=True, figures=figures, results=tmp_path / "results", timeout=600)
    pngs, pdfs = sorted(figures.glob("*.png")), sorted(figures.glob("*.pdf"))
    assert pngs and all(p.stat().st_size > 10_000 for p in pngs)
    assert [p.stem for p in pdfs] == [p.stem for p in pngs], "every figure is saved as PNG and PDF"
    assert all(p.stat().st_size > 5_000 for p in pdfs)
    if path.name in INLINE:
        shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
        assert len(shown) >= len(pngs), "every saved figure also shows inline"


@pytest.mark.parametrize("name", sorted(KNOBS))
def test_first_code_cell_sets_the_knobs_and_passes_them_to_the_builder(name):
    builder, knobs = KNOBS[name]
    first, *rest = code_cells(Path(__file__).parents[1] / "notebooks" / name)
    assert set(knobs) <= assigned(first), "the knobs are assigned in the first code cell"
    call = builder_call(first, builder)
    passed = {k.arg: k.value.id for k in call.keywords if isinstance(k.value, ast.Name)}
    assert passed == {keyword: knob for knob, keyword in knobs.items()}, "each knob is passed by keyword"
    parameters = set(inspect.signature(builder_function(builder)).parameters) - {"quick"}
    assert parameters == set(passed), "every keyword of the builder has a knob"
    for source in rest:
        assert not set(knobs) & assigned(source), "no later cell sets a knob again"
        assert builder not in source, "the configs are built once, in the first cell"


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
@pytest.mark.parametrize("name", sorted(KNOBS))
def test_committed_knobs_are_the_builder_defaults(name, quick, monkeypatch):
    """The knob values in the notebook give the builder's default configs (so cached runs, run keys
    and the documented results stay valid) in quick and in full mode."""
    builder, _ = KNOBS[name]
    monkeypatch.setenv(experiments.QUICK_ENV, "1" if quick else "0")
    first = code_cells(Path(__file__).parents[1] / "notebooks" / name)[0]
    namespace: dict = {}
    exec(compile(first, name, "exec"), namespace)  # builds configs only; folders go to the suite's scratch
    assert namespace["quick"] is quick
    assert namespace["configs"] == builder_function(builder)(quick)


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
