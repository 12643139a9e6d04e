"""`lilm eval`: a fine-tuned model against its base on a dataset's test split.

For each model in turn (one in memory at a time): load it, score test-split perplexity on the
assistant tokens (`pipeline.perplexity`), then generate replies to the first `limit` test
threads through the bots' serving path (`pipeline.eval_generate`). Generated and real replies
are then judged for Cantonese and simplified characters (`pipeline.cantonese_judge`) and
measured. `pipeline.eval_report` writes the report, plots and JSON.

    result = evaluate(base=ModelSpec("Qwen-base"), finetuned=ModelSpec("Qwen-base", adapter="adapters/run"),
                      data="data/lihkg", settings=load_settings(), options=EvalOptions(limit=8))
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.generation import SamplingParams
from core.masking import Masker
from core.settings import Settings
from pipeline.eval_data import LengthStats, TestThread, read_test_split
from pipeline.eval_generate import GeneratedReply, generate_replies
from pipeline.eval_plots import TRAIN_LOG_FILE, LossPoint, read_train_log

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 8  # test threads replied to by each model
DEFAULT_MAX_TOKENS = 80  # per generated reply; LIHKG replies are short
EXCERPT_CHARS = 60  # of the first post, in the side-by-side table


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: an MLX model directory or hub id, optionally with a LoRA adapter."""

    model: str
    adapter: str | None = None

    @property
    def label(self) -> str:
        name = Path(self.model).name or self.model
        return f"{name} + {Path(self.adapter).name}" if self.adapter else name


@dataclass(frozen=True)
class EvalOptions:
    """What to score and how to sample. Sampling settings left None come from Settings."""

    limit: int = DEFAULT_LIMIT
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int = 0
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    perplexity_rows: int | None = None  # test rows scored for perplexity (None: all)
    perplexity_max_tokens: int | None = None  # longest chat scored, in tokens (None: whole)

    def sampling(self, settings: Settings) -> SamplingParams:
        def pick(value, default):
            return default if value is None else value

        return SamplingParams(
            max_tokens=self.max_tokens,
            temperature=pick(self.temperature, settings.temperature),
            top_p=pick(self.top_p, settings.top_p),
            repetition_penalty=pick(self.repetition_penalty, settings.repetition_penalty),
        )


@dataclass(frozen=True)
class ModelEval:
    """Everything measured on one model."""

    role: str  # "base" or "finetuned"
    spec: ModelSpec
    perplexity: object  # pipeline.perplexity.PerplexityResult
    replies: list[GeneratedReply]
    judgement: object  # pipeline.cantonese_judge.JudgementSummary of the replies as shown
    unconverted_judgement: object  # the same, of the replies before HK-character conversion
    lengths: LengthStats
    seconds: dict[str, float]  # load, perplexity, generation


@dataclass(frozen=True)
class SampleRow:
    """One line of the side-by-side table, every text masked as the bots would show it."""

    title: str
    excerpt: str
    real: str
    base: str
    finetuned: str


@dataclass(frozen=True)
class EvalResult:
    """The whole evaluation; `to_json_dict` is what `--json` prints and results.json holds."""

    dataset: str
    test_rows: int
    perplexity_rows: int
    threads: list[TestThread]
    base: ModelEval
    finetuned: ModelEval
    real_judgement: object
    real_lengths: LengthStats
    samples: list[SampleRow]
    options: EvalOptions
    sampling: SamplingParams
    train_log: str | None
    loss_points: list[LossPoint] = field(repr=False, default_factory=list)
    seconds: float = 0.0

    def to_json_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "test_rows": self.test_rows,
            "perplexity_rows": self.perplexity_rows,
            "threads": len(self.threads),
            "seed": self.options.seed,
            "sampling": asdict(self.sampling),
            "models": {m.role: _model_json(m) for m in (self.base, self.finetuned)},
            "real": {"judgement": _as_dict(self.real_judgement), "lengths": asdict(self.real_lengths)},
            "samples": [asdict(s) for s in self.samples],
            "train_log": self.train_log,
            "seconds": round(self.seconds, 2),
        }


def _model_json(m: ModelEval) -> dict:
    return {
        "model": m.spec.model,
        "adapter": m.spec.adapter,
        "label": m.spec.label,
        "perplexity": _as_dict(m.perplexity),
        "judgement": _as_dict(m.judgement),
        "unconverted_judgement": _as_dict(m.unconverted_judgement),
        "lengths": asdict(m.lengths),
        "replies": [r.shown for r in m.replies],
        "seconds": {k: round(v, 2) for k, v in m.seconds.items()},
    }


def _as_dict(value) -> dict:
    """A result dataclass as JSON-ready fields; NaN (nothing measured) becomes null."""
    fields = asdict(value) if hasattr(value, "__dataclass_fields__") else dict(value)
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in fields.items()}


def evaluate(
    *, base: ModelSpec, finetuned: ModelSpec, data: str | Path, settings: Settings, options: EvalOptions = EvalOptions(),
    train_log: str | Path | None = None,
) -> EvalResult:
    """Score both models on the test split of `data` (a dataset directory or a .jsonl file).

    `train_log` defaults to the fine-tuned adapter's train_log.jsonl when there is one.
    Synchronous: runs its own event loop for generation (call it off any running loop).
    """
    from pipeline.cantonese_judge import summarise

    started = time.perf_counter()
    rows = read_test_split(data)
    threads = rows[: options.limit]
    scored = rows if options.perplexity_rows is None else rows[: options.perplexity_rows]
    sampling = options.sampling(settings)
    evals = [
        _evaluate_model(role, spec, threads=threads, scored=scored, settings=settings, options=options, sampling=sampling)
        for role, spec in (("base", base), ("finetuned", finetuned))
    ]
    log_path = _train_log_path(train_log, finetuned)
    real = [t.reply for t in threads]
    return EvalResult(
        dataset=str(data),
        test_rows=len(rows),
        perplexity_rows=len(scored),
        threads=threads,
        base=evals[0],
        finetuned=evals[1],
        real_judgement=summarise(real),
        real_lengths=LengthStats.of(real),
        samples=sample_rows(threads, evals[0].replies, evals[1].replies, masker=_masker(settings)),
        options=options,
        sampling=sampling,
        train_log=str(log_path) if log_path else None,
        loss_points=read_train_log(log_path) if log_path else [],
        seconds=time.perf_counter() - started,
    )


def _evaluate_model(
    role: str, spec: ModelSpec, *, threads: Sequence[TestThread], scored: Sequence[TestThread], settings: Settings,
    options: EvalOptions, sampling: SamplingParams,
) -> ModelEval:
    from pipeline.cantonese_judge import summarise
    from pipeline.perplexity import chat_perplexity

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    model, tokenizer = load_model(spec)
    seconds["load"] = time.perf_counter() - clock
    clock = time.perf_counter()
    # Scored here, on this thread, before the engine's worker thread takes the model over.
    rows = [{"messages": list(t.messages)} for t in scored]
    perplexity = chat_perplexity(model, tokenizer, rows, max_tokens=options.perplexity_max_tokens)
    seconds["perplexity"] = time.perf_counter() - clock
    clock = time.perf_counter()
    replies = asyncio.run(
        generate_replies(
            model, tokenizer, [t.prompt for t in threads], settings=settings, params=sampling, seed=options.seed, name=spec.label
        )
    )
    seconds["generation"] = time.perf_counter() - clock
    log.info("%s %s: perplexity %.2f, %d replies, %s", role, spec.label, perplexity.perplexity, len(replies), seconds)
    shown = [r.shown for r in replies]
    return ModelEval(
        role=role,
        spec=spec,
        perplexity=perplexity,
        replies=replies,
        judgement=summarise(shown),
        unconverted_judgement=summarise([r.unconverted for r in replies]),
        lengths=LengthStats.of(shown),
        seconds=seconds,
    )


def load_model(spec: ModelSpec):
    """(model, tokenizer) as the bots load them: same checks, same ChatML stop tokens."""
    from core.backends.mlx_backend import load_model as load_for_serving

    return load_for_serving(spec.model, spec.adapter)


def _train_log_path(explicit: str | Path | None, finetuned: ModelSpec) -> Path | None:
    if explicit:
        return Path(explicit)
    if finetuned.adapter and (Path(finetuned.adapter) / TRAIN_LOG_FILE).is_file():
        return Path(finetuned.adapter) / TRAIN_LOG_FILE
    return None


def _masker(settings: Settings) -> Masker:
    return Masker.default(extra_words=settings.sensitive_words_extra, extra_file=settings.sensitive_words_file or None)


def sample_rows(
    threads: Sequence[TestThread], base: Sequence[GeneratedReply], finetuned: Sequence[GeneratedReply], *, masker: Masker
) -> list[SampleRow]:
    """The side-by-side table: thread, real reply and both models' replies, masked."""
    rows = []
    for thread, base_reply, tuned_reply in zip(threads, base, finetuned, strict=True):
        content = " ".join(thread.content.split())
        excerpt = content if len(content) <= EXCERPT_CHARS else content[:EXCERPT_CHARS] + "…"
        rows.append(
            SampleRow(
                title=masker.mask(thread.title),
                excerpt=masker.mask(excerpt),
                real=masker.mask(thread.reply),
                base=base_reply.shown,
                finetuned=tuned_reply.shown,
            )
        )
    return rows
