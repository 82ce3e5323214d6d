"""Execute the notebooks headless (figures land in figures/) and strip their outputs.

Notebooks are executed in memory with nbclient and never written back, so the
committed files stay free of outputs. ``quick=True`` sets GRAWA_QUICK=1 for the
kernel (a few steps; used by the tests).

    python -m grawa_sim notebooks [--quick] [NOTEBOOK ...]
    python -m grawa_sim.experiments.notebook_runner --strip notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from grawa_sim.core.devices import DEVICE_ENV
from grawa_sim.experiments.places import FIGURES_ENV, QUICK_ENV, RESULTS_ENV, project_root


def notebooks() -> list[Path]:
    return sorted((project_root() / "notebooks").glob("*.ipynb"))


def execute(path: str | os.PathLike, quick: bool = False, figures: str | os.PathLike | None = None,
            results: str | os.PathLike | None = None, timeout: int = 1800, device: str | None = None):
    """Run every cell of one notebook in a fresh kernel; raises on the first failing cell. Returns the
    executed notebook (an nbformat node, with its outputs; the file on disk is left as it was).

    ``figures`` / ``results`` redirect the figure folder and the run cache (default: the project's);
    ``device`` sets $GRAWA_DEVICE for the kernel (what every config's ``device="auto"`` means there).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in (QUICK_ENV, FIGURES_ENV, RESULTS_ENV, DEVICE_ENV)}
    os.environ[QUICK_ENV] = "1" if quick else "0"
    if device is not None:
        os.environ[DEVICE_ENV] = device
    for key, value in ((FIGURES_ENV, figures), (RESULTS_ENV, results)):
        if value is not None:
            os.environ[key] = str(Path(value).resolve())
    try:  # the kernel inherits this process's environment
        return NotebookClient(nb, timeout=timeout, kernel_name="python3",
                              resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def strip(path: str | os.PathLike) -> bool:
    """Remove outputs and execution counts; returns True when the file changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grawa_sim notebooks")
    parser.add_argument("paths", nargs="*", help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default=None,
                        help="where the notebooks' runs compute: auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--strip", action="store_true", help="strip outputs instead of executing")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.paths] or notebooks()
    for path in paths:
        if args.strip:
            print(f"{path}: {'stripped' if strip(path) else 'clean'}")
        else:
            print(f"executing {path} ({'quick' if args.quick else 'full'})", file=sys.stderr, flush=True)
            start = time.perf_counter()
            execute(path, quick=args.quick, device=args.device)
            print(f"finished {path} in {(time.perf_counter() - start) / 60:.1f} min", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
