"""The `lilm eval` report: Markdown or HTML, with the plots and results.json beside it.

The report is first built as a few plain blocks (headings, paragraphs, tables, images), then
rendered to either format, so both always say the same thing. Every text from the data or a
model is escaped: replies may contain `|`, `*`, `<` or anything else.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.eval_data import LengthStats
from pipeline.eval_plots import plot_length_histogram, plot_loss_curve
from pipeline.evaluate import EvalResult, ModelEval

FORMATS = ("md", "html")
LOSS_CURVE_FILE = "loss_curve.png"
LENGTHS_FILE = "lengths.png"
RESULTS_FILE = "results.json"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    alt: str
    src: str  # relative to the report


Block = Heading | Paragraph | Table | Image


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote (the loss curve is None without a training log)."""

    report: Path
    results: Path
    lengths_plot: Path
    loss_plot: Path | None


def write_report(result: EvalResult, out_dir: str | Path, *, fmt: str = "md") -> ReportFiles:
    """Write report.md or report.html, the PNG plots and results.json into `out_dir`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loss_plot = plot_loss_curve(result.loss_points, out_dir / LOSS_CURVE_FILE, title=f"training loss: {result.finetuned.spec.label}")
    lengths_plot = plot_length_histogram(
        {
            "real": [len(t.reply) for t in result.threads],
            "base": [len(r.shown) for r in result.base.replies],
            "fine-tuned": [len(r.shown) for r in result.finetuned.replies],
        },
        out_dir / LENGTHS_FILE,
    )
    blocks = report_blocks(result, loss_plot=loss_plot.name if loss_plot else None, lengths_plot=lengths_plot.name)
    report = out_dir / f"report.{fmt}"
    report.write_text(render_markdown(blocks) if fmt == "md" else render_html(blocks, title=_title(result)), encoding="utf-8")
    payload = result.to_json_dict() | {
        "report": str(report),
        "plots": {"loss_curve": str(loss_plot) if loss_plot else None, "lengths": str(lengths_plot)},
    }
    results = out_dir / RESULTS_FILE
    results.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return ReportFiles(report=report, results=results, lengths_plot=lengths_plot, loss_plot=loss_plot)


def _title(result: EvalResult) -> str:
    return f"LiLM eval: {result.finetuned.spec.label} vs {result.base.spec.label}"


def report_blocks(result: EvalResult, *, loss_plot: str | None, lengths_plot: str) -> list[Block]:
    """The report's content, format-free."""
    base, tuned = result.base, result.finetuned
    s = result.sampling
    return [
        Heading(1, _title(result)),
        Paragraph(
            f"Test split {result.dataset}: {result.test_rows} rows; perplexity on {result.perplexity_rows} of them, "
            f"replies to the first {len(result.threads)}. Sampling: temperature {s.temperature}, top-p {s.top_p}, "
            f"repetition penalty {s.repetition_penalty}, at most {s.max_tokens} tokens, seed {result.options.seed} "
            f"(thread i uses seed + i). Replies are cleaned and masked as the bots do. Took {result.seconds:.1f} s."
        ),
        Heading(2, "Summary"),
        summary_table(result),
        Paragraph(
            "Perplexity counts the assistant reply tokens only (prompt tokens are context, not scored; a chat longer "
            "than the model's context is cut there). Simplified characters are counted before the bots' conversion "
            "to Hong Kong characters (what the model wrote) and after it (what users see)."
            + _tokenizer_note(base, tuned)
        ),
        Heading(2, "Training loss"),
        Image("loss curve", loss_plot) if loss_plot else Paragraph(
            "No training log: pass --train-log, or an adapter directory holding train_log.jsonl."
        ),
        Heading(2, "Reply lengths (characters)"),
        length_table(result),
        Image("reply length histogram", lengths_plot),
        Heading(2, "Replies side by side"),
        Table(
            ["#", "標題", "內容", "真實回覆", f"base: {base.spec.label}", f"fine-tuned: {tuned.spec.label}"],
            [[str(i), r.title, r.excerpt, r.real, r.base, r.finetuned] for i, r in enumerate(result.samples, 1)],
        ),
    ]


def _tokenizer_note(base: ModelEval, tuned: ModelEval) -> str:
    if base.perplexity.tokens == tuned.perplexity.tokens:
        return ""
    return (f" The two models scored different numbers of tokens ({base.perplexity.tokens} vs {tuned.perplexity.tokens}): "
            "their tokenizers or context lengths differ, so their perplexities are not directly comparable.")


def summary_table(result: EvalResult) -> Table:
    base, tuned = result.base, result.finetuned
    real = result.real_judgement

    def row(name: str, value, *, real_value: str = "–") -> list[str]:
        return [name, value(base), value(tuned), real_value]

    return Table(
        ["", f"base: {base.spec.label}", f"fine-tuned: {tuned.spec.label}", "real replies"],
        [
            row("perplexity (assistant tokens)", lambda m: _number(m.perplexity.perplexity, ".2f")),
            row("mean NLL per token (nats)", lambda m: _number(m.perplexity.nll, ".3f")),
            row("tokens scored", lambda m: str(m.perplexity.tokens)),
            row("judged Cantonese", lambda m: _percent(m.judgement.share_cantonese), real_value=_percent(real.share_cantonese)),
            row("judged mixed / written Chinese / neutral", lambda m: _other_labels(m.judgement), real_value=_other_labels(real)),
            row("simplified characters, as generated (mean per reply)",
                lambda m: _percent(m.unconverted_judgement.mean_simplified_share, digits=1),
                real_value=_percent(real.mean_simplified_share, digits=1)),
            row("replies with any simplified character, as generated",
                lambda m: _percent(m.unconverted_judgement.share_with_simplified),
                real_value=_percent(real.share_with_simplified)),
            row("simplified characters, as shown (mean per reply)", lambda m: _percent(m.judgement.mean_simplified_share, digits=1)),
            row("mean reply length (characters)", lambda m: f"{m.lengths.mean:.1f}", real_value=f"{result.real_lengths.mean:.1f}"),
            row("seconds: load / perplexity / generation", _phase_seconds),
        ],
    )


def length_table(result: EvalResult) -> Table:
    def row(name: str, stats: LengthStats) -> list[str]:
        return [name, str(stats.count), f"{stats.mean:.1f}", f"{stats.median:g}", f"{stats.p10:g}", f"{stats.p90:g}",
                str(stats.min), str(stats.max)]

    return Table(
        ["replies", "n", "mean", "median", "p10", "p90", "min", "max"],
        [row("real", result.real_lengths), row("base", result.base.lengths), row("fine-tuned", result.finetuned.lengths)],
    )


def _phase_seconds(m: ModelEval) -> str:
    return " / ".join(f"{m.seconds.get(k, 0.0):.1f}" for k in ("load", "perplexity", "generation"))


def _number(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "n/a"


def _other_labels(summary) -> str:
    return " / ".join(_percent(x) for x in (summary.share_mixed, summary.share_written, summary.share_neutral))


def _percent(share: float, *, digits: int = 0) -> str:
    return f"{100 * share:.{digits}f}%"


def md_escape(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, no markup.

    >>> md_escape("a|b *c* <i>\\nd")
    'a\\\\|b \\\\*c\\\\* &lt;i&gt;<br>d'
    """
    text = html.escape(text, quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\r", "").replace("\n", "<br>")


def render_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {md_escape(block.text)}")
        elif isinstance(block, Paragraph):
            parts.append(md_escape(block.text))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(md_escape(h) for h in block.header) + " |", "|" + " --- |" * len(block.header)]
            lines += ["| " + " | ".join(md_escape(cell) for cell in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        else:
            parts.append(f"![{md_escape(block.alt)}]({block.src})")
    return "\n\n".join(parts) + "\n"


_CSS = (
    "body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top}"
    "th{background:#f3f3f3}td{white-space:pre-wrap}img{max-width:100%}"
)


def render_html(blocks: list[Block], *, title: str) -> str:
    esc = html.escape
    head = f'<head><meta charset="utf-8"><title>{esc(title)}</title><style>{_CSS}</style></head>'
    parts = [f'<!DOCTYPE html>\n<html lang="yue-Hant-HK">\n{head}\n<body>']
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>\n" for row in block.rows)
            parts.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>")
        else:
            parts.append(f'<p><img src="{esc(block.src)}" alt="{esc(block.alt)}"></p>')
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)
