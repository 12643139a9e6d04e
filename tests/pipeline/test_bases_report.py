"""Report writers on a real comparison (trained, random-initialised and a broken candidate)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from pipeline.bases import compare_bases, load_corpus
from pipeline.bases_models import CandidateSpec
from pipeline.bases_report import (
    SUMMARY_HEADERS,
    display_width,
    format_table,
    to_html,
    to_json,
    to_markdown,
    to_terminal,
)
from tests.pipeline.test_bases import SMALL_OPTIONS, small_probe_set
from tests.pipeline.test_bases_models import trained_and_random

TRICKY_LABEL = "tiny <trained> & | co"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    trained_dir, random_dir = trained_and_random(tmp_path_factory)
    specs = [
        CandidateSpec(model_path=str(trained_dir), label=TRICKY_LABEL),
        CandidateSpec.parse(str(random_dir)),
        CandidateSpec.parse(str(tmp_path_factory.getbasetemp() / "missing-model")),
    ]
    return compare_bases(specs, corpus=load_corpus(max_chars=800), probe_set=small_probe_set(), options=SMALL_OPTIONS)


class _Tables(HTMLParser):
    """Collects the text of every table cell, per table."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
            self.in_cell = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data):
        if self.in_cell:
            self.tables[-1][-1][-1] += data


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_json_holds_every_measured_figure(report):
    data = json.loads(to_json(report))
    trained, baseline, missing = data["candidates"]
    assert trained["label"] == TRICKY_LABEL
    assert trained["perplexity"]["bits_per_char"] == pytest.approx(report.candidates[0].perplexity.bits_per_char)
    assert trained["facts"]["parameters"] == report.candidates[0].facts.parameters
    assert len(trained["continuations"]) == 4 and len(trained["probes"]) == 3
    assert baseline["perplexity"]["bits_per_char"] > trained["perplexity"]["bits_per_char"]
    assert trained["probe_score"]["count"] == 3
    assert missing["error"] and missing["perplexity"] is None
    assert data["options"]["window"] == SMALL_OPTIONS.window and data["corpus_chars"] == 800


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_html_is_escaped_and_shows_the_same_numbers(report):
    page = to_html(report)
    assert "<trained>" not in page and "&lt;trained&gt; &amp;" in page
    parser = _Tables()
    parser.feed(page)
    summary, continuations, probes = parser.tables
    assert summary[0] == SUMMARY_HEADERS
    assert [row[0] for row in summary[1:]] == [c.label for c in report.candidates]
    ppl_column = SUMMARY_HEADERS.index("bits/char")
    assert summary[1][ppl_column] == f"{report.candidates[0].perplexity.bits_per_char:,.3f}"
    # Continuations side by side: a column per working model, a row per prompt and sample.
    assert continuations[0] == ["prompt", TRICKY_LABEL, report.candidates[1].label]
    assert len(continuations) == 1 + 4
    for column, candidate in ((1, report.candidates[0]), (2, report.candidates[1])):
        for row, sample in zip(continuations[1:], candidate.continuations):
            assert row[column].startswith(sample.text or "(nothing)") and f"[{sample.label}" in row[column]
    assert [row[0] for row in probes[1:]] == [p.probe_id for p in report.candidates[0].probes]
    assert "missing-model" in page.split("<h2>Errors</h2>")[1]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_markdown_tables_have_one_row_per_model_and_escaped_pipes(report):
    text = to_markdown(report)
    summary = text.split("## Summary")[1].split("## Continuations")[0].strip().splitlines()
    assert len(summary) == 2 + len(report.candidates)
    assert all(line.count(" | ") == len(SUMMARY_HEADERS) - 1 for line in summary[2:])  # "\\|" is no separator
    assert "tiny <trained> & \\| co" in summary[2]
    for candidate in report.candidates[:2]:
        for sample in candidate.continuations:
            assert sample.text.replace("\n", " ⏎ ").replace("|", "\\|") in text
    assert "## Errors" in text and "missing-model" in text.split("## Errors")[1]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_terminal_tables_are_aligned(report):
    text = to_terminal(report)
    quality, cost, inputs = text.split("\n\n")
    for table in (quality, cost):
        lines = table.splitlines()
        assert len(lines) == 2 + len(report.candidates)
        # Each column starts at the same display offset: the ruler marks the starts.
        starts = [i for i, ch in enumerate(lines[1]) if ch == "-" and (i == 0 or lines[1][i - 1] == " ")]
        assert len(starts) >= 8
    assert "ppl/token" in quality and "peak mem" in cost and "hkcancor-held-out" in inputs


def test_format_table_pads_by_display_width():
    lines = format_table(["名", "n"], [["粵語模型", "1"], ["ab", "22"]]).splitlines()
    last_cells = ["n", "--", "1", "22"]
    assert [line.endswith(cell) for line, cell in zip(lines, last_cells)] == [True] * 4
    # The second column starts after 8 display columns (粵語模型) and two spaces on every line.
    assert [display_width(line[: len(line) - len(cell)]) for line, cell in zip(lines, last_cells)] == [10] * 4
