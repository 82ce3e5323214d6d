"""Rewrite the generated tables of a markdown document; everything between them is kept as written.

A generated table sits between two markers on lines of their own::

    <!-- table: time_budget_accuracy -->
    | ... the rendered table ... |
    <!-- /table -->

The name is a key of `grawa_sim.report.catalog.TABLES`. `regenerate` replaces every block's body by
the table rendered from its CSV; `stale` names the blocks whose committed body differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from grawa_sim.core.folders import write_atomic
from grawa_sim.report.tables import ReportError, Table, render_table

OPEN = re.compile(r"^<!-- table: ([a-z0-9_]+) -->$")
CLOSE = "<!-- /table -->"


def blocks(text: str) -> list[tuple[str, int, int]]:
    """(name, first body line, line after the body) of every marked block, 0-based line numbers."""
    lines = text.split("\n")
    found, start, name = [], None, None
    for i, line in enumerate(lines):
        opened = OPEN.match(line.strip())
        if opened:
            if name is not None:
                raise ReportError(f"line {i + 1}: table {opened.group(1)!r} opens inside table {name!r}")
            name, start = opened.group(1), i + 1
        elif line.strip() == CLOSE:
            if name is None:
                raise ReportError(f"line {i + 1}: '{CLOSE}' without an opening '<!-- table: NAME -->'")
            found.append((name, start, i))
            name = None
        elif line.strip().startswith("<!-- table"):
            raise ReportError(f"line {i + 1}: malformed marker {line.strip()!r} (want '<!-- table: NAME -->')")
    if name is not None:
        raise ReportError(f"line {start}: table {name!r} is never closed with '{CLOSE}'")
    return found


def regenerate(text: str, tables: Mapping[str, Table], figures: Path) -> tuple[str, list[str]]:
    """``text`` with every marked table rendered afresh; returns (new text, names of the changed blocks)."""
    lines = text.split("\n")
    out, changed, last = [], [], 0
    for name, start, end in blocks(text):
        if name not in tables:
            raise ReportError(f"table {name!r}: unknown (known: {', '.join(sorted(tables))})")
        try:
            fresh = render_table(tables[name], figures)
        except ReportError as e:
            raise ReportError(f"table {name!r}: {e}") from None
        if lines[start:end] != fresh:
            changed.append(name)
        out += lines[last:start] + fresh
        last = end
    out += lines[last:]
    return "\n".join(out), changed


def rewrite(path: Path, tables: Mapping[str, Table], figures: Path, check: bool = False) -> list[str]:
    """Regenerate ``path``'s tables in place (``check``: only compare); return the names that differed."""
    text = Path(path).read_text()
    fresh, changed = regenerate(text, tables, figures)
    if changed and not check:
        write_atomic(path, lambda tmp: Path(tmp).write_text(fresh))
    return changed
