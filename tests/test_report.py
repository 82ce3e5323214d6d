"""docs/results.md as a generated report: number formats, the two table shapes, the markers, the command.

The last tests run `report --check` on the committed docs/results.md and figures/*.csv: a number in
the report can no longer drift from the data it came from.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from grawa_sim import report
from grawa_sim.report import catalog
from grawa_sim.report.document import blocks, regenerate
from grawa_sim.report.formatting import format_p, method_label, render, scientific
from grawa_sim.report.tables import Column, Pivot, ReportError, Rows, render_table
from grawa_sim.results.report_tables import save_tables, table_path, tidy

ROOT = Path(__file__).resolve().parents[1]


def test_p_values_follow_the_report_convention():
    assert [format_p(p) for p in (1.0, 0.999, 0.51, 0.1, 0.0995, 0.0123, 0.001, 0.00031, 5.26e-5)] == [
        "1", "1", "0.51", "0.10", "0.1", "0.012", "0.001", "3e-4", "5e-5"]
    assert scientific(2.3e-14) == "2e-14" and scientific(5e3) == "5e3"


def test_cells_use_a_typographic_minus_and_a_dash_for_missing_values():
    assert render("{d:+.3f} [{lo:+.3f}, {hi:+.3f}]", {"d": -0.0021, "lo": -0.01, "hi": 0.006}) == \
        "−0.002 [−0.010, +0.006]"
    assert render("{d:+.3f}", {"d": -0.0001}) == "+0.000"  # no negative zero
    assert render("{p:p}", {"p": 3e-4}) == "3e−4"
    assert render("{a:.3f} ± {b:.3f}", {"a": 0.5, "b": float("nan")}) == "—"
    assert render("{m!m}", {"m": "mgrawa+uniform"}) == "MGRAWA (uniform)"
    assert method_label("lgrawa − lgrawa+uniform") == "LGRAWA − LGRAWA (uniform)"
    assert method_label("something else") == "something else"
    with pytest.raises(KeyError):
        render("{absent}", {"present": 1})


def test_an_optional_missing_field_blanks_only_itself():
    assert render("{a:+.2f} ({b?:.2f})", {"a": 0.02, "b": float("nan")}) == "+0.02 (—)"
    assert render("{a:+.2f} ({b?:.2f})", {"a": 0.02, "b": 0.5}) == "+0.02 (0.50)"
    assert render("{a:+.2f} ({b?:.2f})", {"a": float("nan"), "b": 0.5}) == "—"  # a required field still blanks all
    assert render("{m?!m}", {"m": "dp"}) == "DP"
    with pytest.raises(KeyError, match="b"):
        render("{a} {b?}", {"a": 1})


def _frame(tmp_path: Path) -> Path:
    frame = pd.DataFrame({
        "setting": ["a", "a", "b", "b"], "method": ["dp", "mgrawa", "dp", "mgrawa"],
        "mean": [0.5, 0.61, 0.7, 0.72], "ci": [0.01, 0.02, float("nan"), 0.03],
        "significant": [False, True, False, False]})
    save_tables(tmp_path, "study", acc=frame)
    return tmp_path


def test_rows_and_pivot_tables_render_from_a_saved_csv(tmp_path):
    figures = _frame(tmp_path)
    rows = Rows("study_acc", (Column("method", "{method!m}"), Column("acc", "{mean:.2f} ± {ci:.2f}",
                                                                      bold_if="significant")),
                where={"setting": "a"})
    assert render_table(rows, figures) == ["| method | acc |", "| --- | --- |", "| DP | 0.50 ± 0.01 |",
                                           "| MGRAWA | **0.61 ± 0.02** |"]
    pivot = Pivot("study_acc", "setting", "method", "{mean:.2f}", "setting", column_order=("mgrawa", "dp"))
    assert render_table(pivot, figures) == ["| setting | MGRAWA | DP |", "| --- | --- | --- |",
                                            "| a | 0.61 | 0.50 |", "| b | 0.72 | 0.70 |"]
    ordered = Rows("study_acc", (Column("m", "{method}"), Column("acc", "{mean:.1f}", only_if="ci")),
                   where={"setting": "b"}, order=("method", ("mgrawa", "dp")))
    assert render_table(ordered, figures)[2:] == ["| mgrawa | 0.7 |", "| dp | reference |"]


def test_a_missing_file_column_or_row_is_a_clear_error(tmp_path):
    figures = _frame(tmp_path)
    with pytest.raises(ReportError, match="study_other.csv: no such summary table"):
        render_table(Rows("study_other", (Column("x", "{x}"),)), figures)
    with pytest.raises(ReportError, match="no column 'absent'"):
        render_table(Rows("study_acc", (Column("x", "{absent}"),)), figures)
    with pytest.raises(ReportError, match="no row where"):
        render_table(Rows("study_acc", (Column("x", "{mean}"),), where={"setting": "c"}), figures)
    with pytest.raises(ValueError, match="name: lower-case"):
        table_path(figures, "study", "Bad-Name")


def test_saved_tables_keep_index_levels_and_round_to_six_digits(tmp_path):
    frame = pd.DataFrame({"v": [1 / 3]}, index=pd.Index(["x"], name="method"))
    (path,) = save_tables(tmp_path, "s", t=frame)
    assert path == tmp_path / "s_t.csv"
    assert path.read_text().splitlines() == ["method,v", "x,0.333333"]
    assert list(tidy(frame).columns) == ["method", "v"]


DOC = """# Title
prose kept
<!-- table: acc -->
| stale |
<!-- /table -->
between
<!-- table: acc -->
<!-- /table -->
end"""


def test_regenerate_rewrites_only_the_marked_blocks(tmp_path):
    figures = _frame(tmp_path)
    tables = {"acc": Pivot("study_acc", "setting", "method", "{mean:.2f}", "setting")}
    text, changed = regenerate(DOC, tables, figures)
    assert changed == ["acc", "acc"]
    lines = text.split("\n")
    assert lines[:3] == ["# Title", "prose kept", "<!-- table: acc -->"]
    assert "between" in lines and lines[-1] == "end" and "| stale |" not in lines
    again, changed_again = regenerate(text, tables, figures)
    assert again == text and changed_again == []


@pytest.mark.parametrize("text, message", [
    ("<!-- table: a -->\n", "never closed"),
    ("<!-- /table -->\n", "without an opening"),
    ("<!-- table: a -->\n<!-- table: b -->\n<!-- /table -->", "opens inside"),
    ("<!-- table a -->\n", "malformed marker"),
])
def test_broken_markers_name_the_line(text, message):
    with pytest.raises(ReportError, match=message):
        blocks(text)


def test_an_unknown_table_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ReportError, match="unknown .*known: acc"):
        regenerate("<!-- table: nope -->\n<!-- /table -->", {"acc": catalog.TABLES["comparison_summary"]}, tmp_path)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grawa_sim", "report", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_report_check_fails_on_a_changed_csv_and_report_repairs_it(tmp_path):
    docs, figures = tmp_path / "docs", tmp_path / "figures"
    docs.mkdir()
    shutil.copytree(ROOT / "figures", figures, ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    doc = docs / "results.md"
    shutil.copy(ROOT / "docs" / "results.md", doc)
    summary = pd.read_csv(figures / "comparison_summary.csv")
    summary.loc[0, "test_acc_mean"] = 0.123456
    summary.to_csv(figures / "comparison_summary.csv", index=False)

    changed_row = render_table(catalog.TABLES["comparison_summary"], figures)[2]
    assert changed_row.startswith("| EASGD | 0.123 ± ")
    failed = _cli("--check", "--doc", str(doc))
    assert failed.returncode == 1 and "comparison_summary" in failed.stderr
    assert changed_row not in doc.read_text()  # --check writes nothing
    assert _cli("--doc", str(doc)).returncode == 0
    assert changed_row in doc.read_text()
    assert _cli("--check", "--doc", str(doc)).returncode == 0


def test_report_errors_are_one_line_with_exit_2(tmp_path):
    missing = _cli("--check", "--doc", str(tmp_path / "absent.md"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "doc:" in missing.stderr
    doc = tmp_path / "results.md"
    doc.write_text("<!-- table: comparison_summary -->\n<!-- /table -->\n")
    no_csv = _cli("--doc", str(doc), "--figures", str(tmp_path))
    assert no_csv.returncode == 2 and "comparison_summary.csv: no such summary table" in no_csv.stderr


def test_the_committed_report_matches_its_csvs():
    assert report.update(ROOT / "docs" / "results.md", ROOT / "figures", check=True) == []


def test_every_catalogued_table_appears_in_the_report():
    used = {name for name, _, _ in blocks((ROOT / "docs" / "results.md").read_text())}
    assert set(catalog.TABLES) - used == set()
