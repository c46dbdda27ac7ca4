"""The progress line and the summary of a run: on a terminal (a pseudo-terminal here), never in a pipe."""

from __future__ import annotations

import re

import pytest

from sensor_etl.ops.progress import Summary, summary_table
from tests.helpers.corpus import csv_text, good, row
from tests.helpers.terminal import run_on_terminal
from tests.helpers.workspace import Workspace

PROGRESS = re.compile(r"\rfiles 3/3, rows 5, [\d,]+ rows/s  100%\|█+\| 400B/400B \[[\d:]+<[\d:]+\]")


def drop_three(ws: Workspace) -> None:
    ws.write("a.csv", good("a", 2))
    ws.write("b.csv", good("b", 3))
    ws.write("hot.csv", csv_text(row(0, "h"), row(1, "h", 61)))


@pytest.mark.slow
def test_once_on_a_terminal_shows_a_progress_line_and_ends_with_the_summary_table(workspace: Workspace, db) -> None:
    drop_three(workspace)
    output = run_on_terminal(workspace, ["--once"])
    assert output.code == 0, output.text
    assert PROGRESS.search(output.text), output.text
    assert "\r\n  out_of_range      1\r\n" in output.text, output.text
    table = output.text[output.text.index("outcome  ") :].replace("\r\n", "\n")
    assert re.match(
        r"outcome\s+files\s+rows\n-+  -+  -+\nloaded\s+2\nquarantined\s+1\n  out_of_range\s+1\nwaiting\s+0\nrows loaded\s+5\n-+", table
    ), table
    assert len(re.findall(r" file_loaded ", output.text)) == 2, "the log lines are still written, above the progress line"


@pytest.mark.slow
def test_no_progress_line_and_no_table_in_a_pipe_or_with_quiet(workspace: Workspace, db) -> None:
    drop_three(workspace)
    piped = workspace.cli("--once")
    assert piped.returncode == 0
    assert "\r" not in piped.stderr and "%|" not in piped.stderr and "outcome" not in piped.stderr and piped.stdout == ""
    summary = [line for line in piped.stderr.splitlines() if " run_summary " in line]
    assert len(summary) == 1
    assert summary[0].endswith(
        " quarantined_by_rule=out_of_range:1 waiting=0 rows=5 rows_rejected=0 " + summary[0].split(" rows_rejected=0 ")[1]
    )
    assert " loaded=2 partial=0 duplicate=0 recovered=0 quarantined=1 deferred=0 " in summary[0]

    workspace.write("c.csv", good("c", 1))
    quiet = run_on_terminal(workspace, ["--once", "--quiet"])
    assert quiet.code == 0
    assert "%|" not in quiet.text and "outcome" not in quiet.text
    assert " run_summary loaded=1 " in quiet.text


def test_the_summary_table_lists_each_outcome_seen_and_each_rule() -> None:
    summary = Summary({"loaded": 12, "partial": 1, "duplicate": 0, "quarantined": 3}, {"out_of_range": 2, "encoding": 1}, 4, 12345, 6, 2.5)
    assert summary_table(summary).splitlines() == [
        "outcome         files    rows",
        "--------------  -----  ------",
        "loaded             12",
        "partial             1",
        "quarantined         3",
        "  encoding          1",
        "  out_of_range      2",
        "waiting             4",
        "rows loaded            12,345",
        "rows rejected               6",
        "--------------  -----  ------",
        "2.5 s, 4,938 rows/s",
    ]
    assert summary.event_fields()["quarantined_by_rule"] == "encoding:1,out_of_range:2"
