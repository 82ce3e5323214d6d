"""A report table: which summary CSV it reads, which rows it keeps and how each cell is written.

Two shapes:
- `Rows`: one markdown row per CSV row, one `Column` (header + template) per markdown column;
- `Pivot`: one markdown row per value of ``rows`` and one column per value of ``columns``, every cell
  the same template over the CSV row that holds that pair.
Both keep the CSV's order unless given one, filter with ``where`` ({column: value or tuple of values})
and may put a cell in bold where a boolean column is true (``bold_if``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from grawa_sim.core.errors import ConfigError
from grawa_sim.report.formatting import MISSING, is_missing, render


class ReportError(ConfigError):
    """A report table that cannot be rendered (missing file, column or row); the message says which."""


@dataclasses.dataclass(frozen=True)
class Column:
    header: str
    template: str
    bold_if: str | None = None  # a boolean column: the cell in bold where it is true
    only_if: str | None = None  # a column: where it is missing the cell reads ``otherwise``
    otherwise: str = "reference"


@dataclasses.dataclass(frozen=True)
class Rows:
    csv: str
    columns: tuple[Column, ...]
    where: dict = dataclasses.field(default_factory=dict)
    order: tuple[str, tuple] | None = None  # (column, values in the wanted order); other rows dropped


@dataclasses.dataclass(frozen=True)
class Pivot:
    csv: str
    rows: str | tuple[str, ...]  # one column, or several whose values together name a row
    columns: str
    cell: str
    row_header: str
    row_label: str = "{value}"  # template over {value} (and the row's first CSV row)
    column_label: str = "{value!m}"
    where: dict = dataclasses.field(default_factory=dict)
    row_order: tuple | None = None
    column_order: tuple | None = None
    bold_if: str | None = None
    extra: tuple[Column, ...] = ()  # columns after the pivot, from each row's first CSV row


Table = Rows | Pivot


def load(figures: Path, csv: str) -> pd.DataFrame:
    path = Path(figures) / f"{csv}.csv"
    if not path.is_file():
        raise ReportError(f"{path}: no such summary table (the study that writes it regenerates it)")
    return pd.read_csv(path)


def _matches(series: pd.Series, wanted: object) -> pd.Series:
    values = wanted if isinstance(wanted, tuple) else (wanted,)
    if pd.api.types.is_numeric_dtype(series):
        return series.apply(lambda v: any(pd.notna(v) and abs(float(v) - float(w)) < 1e-9 for w in values))
    return series.astype(str).isin([str(w) for w in values])


def select(frame: pd.DataFrame, where: dict, csv: str) -> pd.DataFrame:
    for column, wanted in where.items():
        if column not in frame:
            raise ReportError(f"{csv}.csv: no column {column!r} (has {', '.join(frame.columns)})")
        frame = frame[_matches(frame[column], wanted)]
    if frame.empty:
        raise ReportError(f"{csv}.csv: no row where {where}")
    return frame


def _ordered(values: list, order: tuple | None) -> list:
    if order is None:
        return list(dict.fromkeys(values))
    present = set(map(str, values))
    return [v for v in order if str(v) in present]


def _cell(template: str, row: dict, csv: str, bold: bool = False) -> str:
    try:
        text = render(template, row)
    except KeyError as e:
        raise ReportError(f"{csv}.csv: no column {e.args[0]!r} (has {', '.join(row)})") from None
    return f"**{text}**" if bold and text != MISSING else text


def _column_cell(column: Column, row: dict, csv: str) -> str:
    if column.only_if is not None and is_missing(row.get(column.only_if)):
        return column.otherwise
    return _cell(column.template, row, csv, _truthy(row, column.bold_if))


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _markdown(headers: list[str], body: list[list[str]]) -> list[str]:
    return [_line(headers), _line(["---"] * len(headers)), *(_line(cells) for cells in body)]


def _truthy(row: dict, column: str | None) -> bool:
    return bool(column) and str(row.get(column)).lower() in ("true", "1", "1.0")


def render_rows(table: Rows, frame: pd.DataFrame) -> list[str]:
    frame = select(frame, table.where, table.csv)
    records = frame.to_dict("records")
    if table.order is not None:
        column, values = table.order
        by_key = {str(r[column]): r for r in records}
        records = [by_key[str(v)] for v in values if str(v) in by_key]
    body = [[_column_cell(c, r, table.csv) for c in table.columns] for r in records]
    return _markdown([c.header for c in table.columns], body)


def render_pivot(table: Pivot, frame: pd.DataFrame) -> list[str]:
    frame = select(frame, table.where, table.csv)
    row_columns = (table.rows,) if isinstance(table.rows, str) else table.rows
    for column in (*row_columns, table.columns):
        if column not in frame:
            raise ReportError(f"{table.csv}.csv: no column {column!r} (has {', '.join(frame.columns)})")
    records = frame.to_dict("records")

    def row_key(record: dict) -> str:
        return "|".join(str(record[c]) for c in row_columns)

    order = None if table.row_order is None else tuple(
        v if isinstance(v, str) or isinstance(table.rows, str) else "|".join(map(str, v)) for v in table.row_order)
    rows = _ordered([row_key(r) if len(row_columns) > 1 else r[table.rows] for r in records], order)
    columns = _ordered(frame[table.columns].tolist(), table.column_order)
    keyed = {(row_key(r), str(r[table.columns])): r for r in records}
    headers = [table.row_header] + [_cell(table.column_label, {"value": c}, table.csv) for c in columns]
    headers += [c.header for c in table.extra]
    body = []
    for value in rows:
        first = next(r for (k, _), r in keyed.items() if k == str(value))
        cells = [_cell(table.row_label, {**first, "value": value}, table.csv)]
        for column in columns:
            record = keyed.get((str(value), str(column)))
            cells.append(MISSING if record is None else
                         _cell(table.cell, record, table.csv, _truthy(record, table.bold_if)))
        cells += [_column_cell(c, first, table.csv) for c in table.extra]
        body.append(cells)
    return _markdown(headers, body)


def render_table(table: Table, figures: Path) -> list[str]:
    """The markdown lines of ``table`` from its CSV under ``figures``."""
    frame = load(figures, table.csv)
    return render_rows(table, frame) if isinstance(table, Rows) else render_pivot(table, frame)
