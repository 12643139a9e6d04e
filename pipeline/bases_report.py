"""Reports of `lilm bases`: a terminal table, Markdown, HTML and JSON from one BasesReport.

All formats share `summary_table` (one row per model), so the numbers always agree; Markdown
and HTML add the continuations side by side (one column per model) and every probe's answers.

    >>> print(format_table(["model", "ppl"], [["粵語-tiny", "12.5"], ["x", "3"]]))
    model      ppl
    ---------  ----
    粵語-tiny  12.5
    x          3
"""

from __future__ import annotations

import html
import json
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict

from pipeline.bases import BasesReport, CandidateResult

SUMMARY_HEADERS = [
    "model", "params", "disk", "quant", "load s", "window/stride", "ppl/token", "bits/char",
    "Cantonese", "written", "mixed", "simplified", "MC loglik", "MC generated", "tok/s", "gen peak mem", "peak mem",
    "time s",
]

SCORING_NOTE = (
    "ppl/token is per the model's own tokens; bits/char compares models with different tokenizers. "
    "gen peak mem: peak while loading and sampling (what serving needs); peak mem: the whole "
    "evaluation, batched perplexity logits included. Cantonese/written/mixed: cantonesedetect labels of the sampled continuations; simplified: mean "
    "share of simplified-only characters. MC loglik: multiple choice scored by the option with the "
    "lowest NLL per character after the question. MC generated: the greedy answer parsed as a "
    "letter, an option or a number."
)


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def human_bytes(n: int) -> str:
    """Bytes in the largest unit that keeps a number >= 1.

    >>> human_bytes(6_683_880), human_bytes(512), human_bytes(4_500_000_000)
    ('6.7 MB', '512 B', '4.5 GB')
    """
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def human_count(n: int) -> str:
    """Parameter counts as 1.56M / 7.62B.

    >>> human_count(1_556_608), human_count(7_615_616_512), human_count(900)
    ('1.56M', '7.62B', '900')
    """
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def summary_row(c: CandidateResult) -> list[str]:
    """One model's figures in SUMMARY_HEADERS order ("-" where not measured)."""
    if c.error:
        return [c.label, "error: " + c.error[:60]] + ["-"] * (len(SUMMARY_HEADERS) - 2)
    f, p, j, s = c.facts, c.perplexity, c.continuation_summary, c.probe_score
    chance = f" (chance {_percent(s.chance)})" if s else ""
    return [
        c.label,
        human_count(f.parameters),
        human_bytes(f.disk_bytes),
        f.quantization,
        _number(f.load_seconds),
        f"{p.window}/{p.stride}" if p else "-",
        _number(p.perplexity if p else None, 1),
        _number(p.bits_per_char if p else None, 3),
        _percent(j.share_cantonese if j else None),
        _percent(j.share_written if j else None),
        _percent(j.share_mixed if j else None),
        _percent(j.mean_simplified_share if j else None),
        _percent(s.loglik_accuracy if s else None) + chance,
        _percent(s.generated_accuracy if s else None),
        _number(c.tokens_per_sec, 1),
        human_bytes(c.generation_peak_memory_bytes),
        human_bytes(c.peak_memory_bytes),
        _number(c.seconds, 1),
    ]


def summary_table(report: BasesReport) -> tuple[list[str], list[list[str]]]:
    return SUMMARY_HEADERS, [summary_row(c) for c in report.candidates]


def display_width(text: str) -> int:
    """Terminal columns: wide (CJK) characters take two.

    >>> display_width("粵語ab")
    6
    """
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table for the terminal (CJK-aware; trailing spaces trimmed)."""
    widths = [max(display_width(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c) + " " * (w - display_width(str(c))) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def to_terminal(report: BasesReport) -> str:
    """The summary as two narrower tables (cost, then quality), plus the run's inputs."""
    headers, rows = summary_table(report)
    cost = [0, 1, 2, 3, 4, 14, 15, 16, 17]
    quality = [0, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    return "\n\n".join([
        format_table(_pick(headers, quality), [_pick(r, quality) for r in rows]),
        format_table(_pick(headers, cost), [_pick(r, cost) for r in rows]),
        _inputs_line(report),
    ])


def _pick(row: Sequence[str], columns: Sequence[int]) -> list[str]:
    return [row[i] for i in columns]


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _inputs_line(report: BasesReport) -> str:
    o = report.options
    return (f"corpus {report.corpus} ({report.corpus_chars:,} chars); probes {report.probes_source}; "
            f"{o.continuation_samples} samples/prompt at temperature {o.temperature}, top-p {o.top_p}, "
            f"seed {o.seed}; total {report.seconds:.1f}s")


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ⏎ ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def continuation_table(report: BasesReport) -> tuple[list[str], list[list[str]]]:
    """Prompt x sample rows, one column per model: `text [label, simplified %]`."""
    models = [c for c in report.candidates if not c.error]
    keys = []
    for c in models:
        for s in c.continuations:
            if (s.prompt_id, s.sample) not in keys:
                keys.append((s.prompt_id, s.sample))
    rows = []
    for prompt_id, sample in keys:
        prompt = next(s.prompt for c in models for s in c.continuations if s.prompt_id == prompt_id)
        row = [f"{prompt} (#{sample + 1})"]
        for c in models:
            found = [s for s in c.continuations if (s.prompt_id, s.sample) == (prompt_id, sample)]
            row.append(_sample_cell(found[0]) if found else "-")
        rows.append(row)
    return ["prompt"] + [c.label for c in models], rows


def _sample_cell(s) -> str:
    simplified = f", simplified {s.simplified_share:.0%}" if s.simplified_share else ""
    return f"{s.text or '(nothing)'} [{s.label}{simplified}]"


def probe_table(report: BasesReport) -> tuple[list[str], list[list[str]]]:
    """One row per probe: per model the log-likelihood pick and the generated answer, ✓/✗."""
    models = [c for c in report.candidates if not c.error]
    ids = list(dict.fromkeys(o.probe_id for c in models for o in c.probes))
    rows = []
    for probe_id in ids:
        row = [probe_id]
        for c in models:
            found = [o for o in c.probes if o.probe_id == probe_id]
            if not found:
                row.append("-")
                continue
            o = found[0]
            row.append(f"loglik {_mark(o.loglik_correct)} #{o.loglik_choice + 1}; "
                       f"generated {_mark(o.generated_correct)} “{o.generated[:40]}”")
        rows.append(row)
    return ["probe"] + [c.label for c in models], rows


def to_markdown(report: BasesReport) -> str:
    """The whole report as Markdown."""
    parts = [
        "# Base model comparison",
        f"{report.created}. {_inputs_line(report)}.",
        SCORING_NOTE,
        "## Summary",
        _markdown_table(*summary_table(report)),
        "## Continuations",
        _markdown_table(*continuation_table(report)),
        "## Probes",
        _markdown_table(*probe_table(report)),
    ]
    errors = [f"- {c.label}: {c.error}" for c in report.candidates if c.error]
    if errors:
        parts += ["## Errors", "\n".join(errors)]
    return "\n\n".join(parts) + "\n"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: BasesReport) -> str:
    """A standalone HTML page (no scripts, no external files)."""
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;white-space:pre-wrap}"
             "th{background:#f4f4f4}")
    sections = [
        ("Summary", summary_table(report)),
        ("Continuations", continuation_table(report)),
        ("Probes", probe_table(report)),
    ]
    body = "".join(f"<h2>{title}</h2>{_html_table(*table)}" for title, table in sections)
    errors = "".join(f"<li>{html.escape(c.label)}: {html.escape(c.error)}</li>" for c in report.candidates if c.error)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Base model comparison</title>'
        f"<style>{style}</style></head><body><h1>Base model comparison</h1>"
        f"<p>{html.escape(report.created)}. {html.escape(_inputs_line(report))}.</p>{body}"
        + (f"<h2>Errors</h2><ul>{errors}</ul>" if errors else "")
        + "</body></html>\n"
    )


def _finite(value):
    """NaN and infinities become None so the JSON is standard.

    >>> _finite({"a": [float("nan"), 1.5]})
    {'a': [None, 1.5]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(report: BasesReport) -> str:
    """Every field of the report (standard JSON: NaN as null)."""
    return json.dumps(_finite(asdict(report)), ensure_ascii=False, indent=2)


__all__ = [
    "continuation_table",
    "format_table",
    "human_bytes",
    "human_count",
    "probe_table",
    "summary_table",
    "to_html",
    "to_json",
    "to_markdown",
    "to_terminal",
]
