"""docs/results.md as a generated report: its tables are rendered from the summary CSVs in figures/.

    python -m grawa_sim report            # rewrite the tables between the markers
    python -m grawa_sim report --check    # exit 1 when a committed table differs from its CSV

The prose between the tables is written by hand; the tables (`catalog.TABLES`) are not.
"""

from __future__ import annotations

from pathlib import Path

from grawa_sim.experiments.places import project_root
from grawa_sim.report.catalog import TABLES
from grawa_sim.report.document import blocks, regenerate, rewrite
from grawa_sim.report.tables import ReportError

__all__ = ["TABLES", "ReportError", "blocks", "default_document", "regenerate", "update"]


def default_document() -> Path:
    return project_root() / "docs" / "results.md"


def update(doc: str | Path, figures: str | Path, check: bool = False) -> list[str]:
    """Regenerate ``doc``'s tables from the CSVs in ``figures`` (``check``: compare only); return the changed names."""
    doc = Path(doc)
    if not doc.is_file():
        raise ReportError(f"doc: {doc} is not a file")
    return rewrite(doc, TABLES, Path(figures), check=check)
