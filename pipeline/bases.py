"""`lilm bases`: compare candidate base models on Cantonese before spending hours on LoRA.

For each candidate (a local MLX model directory, optionally `DIR@ADAPTER`):
- perplexity on held-out Cantonese with a sliding window, per token and as bits per character
  (comparable across tokenizers), on the same text for every model;
- sampled continuations of Cantonese sentence starts, judged Cantonese / written Chinese / mixed
  and checked for simplified characters;
- multiple-choice Hong Kong knowledge and algebra probes (see pipeline/bases_probes.py);
- disk size, parameters, load time, generation tokens/s and peak memory.

Models are evaluated one after another and released in between, so peak memory is each
model's own. Chat-templated tokenizers get prompts as one user message; others plain text.
"""

from __future__ import annotations

import gc
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.errors import ConfigError, LilmError
from core.settings import DEFAULT_MODEL_DIR
from pipeline.bases_models import (
    CandidateSpec,
    LoadedCandidate,
    ModelFacts,
    load_candidate,
)
from pipeline.bases_probes import (
    ProbeOutcome,
    ProbeScore,
    ProbeSet,
    cloze_prompt,
    lettered_prompt,
    probe_outcome,
    score_probes,
)
from pipeline.cantonese_judge import (
    JudgementSummary,
    judge,
    new_detector,
    summarise_judgements,
)
from pipeline.perplexity import (
    PerplexityResult,
    ScoredSpan,
    clamp_window,
    sliding_window_perplexity,
    span_nlls,
)

HELD_OUT_CORPUS = "hkcancor-held-out"
FULL_CORPUS = "hkcancor"
# `<|im_end|>`-style special tokens and U+FFFD from broken bytes: not part of the answer text.
_SPECIAL_TOKEN_RE = re.compile(r"<[|｜][^<>|｜\s]{1,80}[|｜]>|\ufffd")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BasesOptions:
    """Knobs of a comparison (CLI flags map one to one)."""

    window: int = 512
    stride: int = 256
    max_chars: int = 30_000  # corpus cut (0: all): bounds the run time for large models
    continuation_samples: int = 2
    continuation_tokens: int = 48
    answer_tokens: int = 16
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class CorpusText:
    """Documents scored for perplexity (each read on its own with the sliding window)."""

    name: str
    documents: tuple[str, ...]

    @property
    def chars(self) -> int:
        return sum(len(d) for d in self.documents)


@dataclass(frozen=True)
class PerplexityFigures:
    """Corpus perplexity of one model; bits_per_char compares models with different tokenizers."""

    window: int
    stride: int
    tokens: int
    chars: int
    nll: float
    perplexity: float
    bits_per_char: float
    seconds: float


@dataclass(frozen=True)
class ContinuationSample:
    """One sampled continuation and its judgement."""

    prompt_id: str
    prompt: str
    sample: int
    text: str
    label: str
    simplified_share: float
    tokens: int


@dataclass(frozen=True)
class GeneratedText:
    text: str
    tokens: int
    seconds: float
    generation_tps: float


@dataclass
class CandidateResult:
    """Everything measured for one candidate; `error` is set when it could not be evaluated."""

    label: str
    model_path: str
    adapter_path: str | None
    facts: ModelFacts | None = None
    perplexity: PerplexityFigures | None = None
    continuations: list[ContinuationSample] = field(default_factory=list)
    continuation_summary: JudgementSummary | None = None
    probes: list[ProbeOutcome] = field(default_factory=list)
    probe_score: ProbeScore | None = None
    generated_tokens: int = 0
    tokens_per_sec: float = 0.0  # decoding speed over all generations (mlx-lm's generation_tps)
    peak_memory_bytes: int = 0  # the whole evaluation (batched perplexity logits included)
    generation_peak_memory_bytes: int = 0  # loading and sampling only: what serving needs
    seconds: float = 0.0
    error: str | None = None


@dataclass
class BasesReport:
    """A whole comparison: options, inputs and one result per candidate."""

    options: BasesOptions
    corpus: str
    corpus_chars: int
    probes_source: str
    candidates: list[CandidateResult]
    seconds: float = 0.0
    created: str = ""


def load_corpus(corpus: str = HELD_OUT_CORPUS, *, max_chars: int = 0, build_dir: Path = DEFAULT_MODEL_DIR) -> CorpusText:
    """`hkcancor-held-out` (the conversations the embedded model never trained on, as listed
    in its lilm_build.json), `hkcancor` (all of it) or a UTF-8 text file; cut to `max_chars`."""
    if corpus in (HELD_OUT_CORPUS, FULL_CORPUS):
        from pipeline.hkcancor import load_hkcancor

        conversations = load_hkcancor()
        if corpus == HELD_OUT_CORPUS:
            held_out = set(_held_out_names(build_dir))
            conversations = [c for c in conversations if c.name in held_out]
        documents = [c.text for c in conversations]
    else:
        path = Path(corpus)
        try:
            documents = [path.read_text(encoding="utf-8")]
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read corpus {corpus!r}: expected {HELD_OUT_CORPUS}, {FULL_CORPUS} "
                              f"or a UTF-8 text file ({error})") from error
    documents = _cut(documents, max_chars)
    if not documents:
        raise ConfigError(f"corpus {corpus!r} holds no text")
    return CorpusText(name=corpus, documents=tuple(documents))


def _held_out_names(build_dir: Path) -> list[str]:
    info_file = Path(build_dir) / "lilm_build.json"
    try:
        names = json.loads(info_file.read_text(encoding="utf-8"))["held_out_conversations"]
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"{info_file} lists no held_out_conversations: use --corpus {FULL_CORPUS} "
                          f"or a text file ({error})") from error
    return list(names)


def _cut(documents: Sequence[str], max_chars: int) -> list[str]:
    """Documents up to `max_chars` characters in all (the last one cut), empty ones dropped.

    >>> _cut(["abcd", "efgh", "ij"], 6)
    ['abcd', 'ef']
    """
    kept, left = [], max_chars if max_chars > 0 else math.inf
    for doc in documents:
        if left <= 0:
            break
        doc = doc if len(doc) <= left else doc[: int(left)]
        if doc.strip():
            kept.append(doc)
        left -= len(doc)
    return kept


def prompt_tokens(tokenizer, text: str) -> list[int]:
    """`text` as one user message through the chat template, or plain text without one."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
        return list(getattr(ids, "input_ids", ids))
    return list(tokenizer.encode(text))


def clean_generation(text: str) -> str:
    """Special tokens and replacement characters removed, whitespace trimmed.

    >>> clean_generation(" 好正呀<|im_end|>\\ufffd ")
    '好正呀'
    """
    return _SPECIAL_TOKEN_RE.sub("", text).strip()


def generate(model, tokenizer, prompt: Sequence[int], *, max_tokens: int, temperature: float,
             top_p: float, seed: int) -> GeneratedText:
    """One generation (greedy when temperature is 0), seeded for repeatable samples."""
    import mlx.core as mx
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    mx.random.seed(seed)
    sampler = make_sampler(temp=temperature, top_p=top_p if temperature > 0 else 0.0)
    pieces, last = [], None
    began = time.perf_counter()
    for last in stream_generate(model, tokenizer, list(prompt), max_tokens=max_tokens, sampler=sampler):
        pieces.append(last.text)
    seconds = time.perf_counter() - began
    tokens = last.generation_tokens if last else 0
    return GeneratedText(text=clean_generation("".join(pieces)), tokens=tokens, seconds=seconds,
                         generation_tps=last.generation_tps if last else 0.0)


def corpus_perplexity(candidate: LoadedCandidate, corpus: CorpusText, options: BasesOptions,
                      progress: Progress = lambda _: None) -> PerplexityFigures:
    """Sliding-window perplexity over every document, the window clamped to the model's context."""
    window, stride = clamp_window(candidate.model, options.window, options.stride)
    began = time.perf_counter()
    results = []
    for doc in corpus.documents:
        ids = candidate.tokenizer.encode(doc)
        results.append(sliding_window_perplexity(candidate.model, ids, window=window, stride=stride))
        progress("perplexity")
    total = PerplexityResult.combine(results)
    nll_sum = total.nll * total.tokens if total.tokens else math.nan
    return PerplexityFigures(
        window=window, stride=stride, tokens=total.tokens, chars=corpus.chars, nll=total.nll,
        perplexity=total.perplexity, bits_per_char=nll_sum / math.log(2) / max(1, corpus.chars),
        seconds=time.perf_counter() - began,
    )


def run_continuations(candidate: LoadedCandidate, probe_set: ProbeSet, options: BasesOptions,
                      progress: Progress = lambda _: None,
                      ) -> tuple[list[ContinuationSample], JudgementSummary, list[GeneratedText]]:
    """Sample each continuation prompt `continuation_samples` times and judge every sample."""
    detector = new_detector()
    samples, verdicts, generations = [], [], []
    chat = candidate.facts.has_chat_template
    for item in probe_set.continuations:
        text = probe_set.continuation_instruction + item.text if chat else item.text
        prompt = prompt_tokens(candidate.tokenizer, text)
        for sample in range(options.continuation_samples):
            out = generate(candidate.model, candidate.tokenizer, prompt, max_tokens=options.continuation_tokens,
                           temperature=options.temperature, top_p=options.top_p, seed=options.seed + sample)
            verdict = judge(out.text, detector=detector)
            verdicts.append(verdict)
            samples.append(ContinuationSample(prompt_id=item.id, prompt=item.text, sample=sample, text=out.text,
                                              label=verdict.label, simplified_share=verdict.simplified_share,
                                              tokens=out.tokens))
            generations.append(out)
        progress("continuations")
    return samples, summarise_judgements(verdicts), generations


def run_probes(candidate: LoadedCandidate, probe_set: ProbeSet, options: BasesOptions,
               progress: Progress = lambda _: None) -> tuple[list[ProbeOutcome], list[GeneratedText]]:
    """Score every option by log-likelihood, then let the model answer greedily."""
    model, tokenizer = candidate.model, candidate.tokenizer
    outcomes, generations = [], []
    for probe in probe_set.probes:
        prompt = prompt_tokens(tokenizer, cloze_prompt(probe))
        spans = []
        for option in probe.options:
            option_ids = list(tokenizer.encode(option, add_special_tokens=False))
            spans.append(ScoredSpan(tokens=prompt + option_ids, first=len(prompt), end=len(prompt) + len(option_ids)))
        nlls = span_nlls(model, spans, pad_id=_pad_id(tokenizer))
        answer = generate(model, tokenizer, prompt_tokens(tokenizer, lettered_prompt(probe)),
                          max_tokens=options.answer_tokens, temperature=0.0, top_p=0.0, seed=options.seed)
        outcomes.append(probe_outcome(probe, nlls, answer.text))
        generations.append(answer)
        progress("probes")
    return outcomes, generations


def _pad_id(tokenizer) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if isinstance(pad, int) else 0


def progress_units(corpus: CorpusText, probe_set: ProbeSet) -> int:
    """Progress steps per candidate: load, each document, each prompt, each probe."""
    return 1 + len(corpus.documents) + len(probe_set.continuations) + len(probe_set.probes)


def evaluate_candidate(spec: CandidateSpec, corpus: CorpusText, probe_set: ProbeSet, options: BasesOptions,
                       progress: Progress = lambda _: None) -> CandidateResult:
    """Load, measure and release one candidate. A LilmError (e.g. a bad directory) is recorded
    in `error` so the other candidates still get compared."""
    import mlx.core as mx

    result = CandidateResult(label=spec.label, model_path=spec.model_path, adapter_path=spec.adapter_path)
    outer_progress = progress

    def progress(stage: str) -> None:  # stages are reported as "<label> <stage>"
        outer_progress(f"{spec.label} {stage}")

    began = time.perf_counter()
    mx.clear_cache()
    mx.reset_peak_memory()
    try:
        candidate = load_candidate(spec)
    except LilmError as error:
        result.error = str(error)
        for _ in range(progress_units(corpus, probe_set)):  # keep the bar's total honest
            progress("skipped")
        return result
    progress("load")
    try:
        result.facts = candidate.facts
        # Generation first: its peak (weights + KV cache) is what serving the model needs;
        # perplexity's batched logits come later and only raise the overall peak.
        result.continuations, result.continuation_summary, continuation_runs = run_continuations(
            candidate, probe_set, options, progress
        )
        result.generation_peak_memory_bytes = int(mx.get_peak_memory())
        result.perplexity = corpus_perplexity(candidate, corpus, options, progress)
        result.probes, probe_runs = run_probes(candidate, probe_set, options, progress)
        result.probe_score = score_probes(probe_set.probes, result.probes)
        runs = [g for g in continuation_runs + probe_runs if g.tokens > 0]
        result.generated_tokens = sum(g.tokens for g in runs)
        # Token-weighted mean of mlx-lm's per-generation decoding speed.
        result.tokens_per_sec = sum(g.generation_tps * g.tokens for g in runs) / max(1, result.generated_tokens)
        result.peak_memory_bytes = int(mx.get_peak_memory())
    finally:
        del candidate
        gc.collect()
        mx.clear_cache()
    result.seconds = time.perf_counter() - began
    return result


def compare_bases(specs: Sequence[CandidateSpec], *, corpus: CorpusText, probe_set: ProbeSet,
                  options: BasesOptions = BasesOptions(), progress: Progress = lambda _: None) -> BasesReport:
    """Evaluate every candidate in turn on the same corpus and probes."""
    began = time.perf_counter()
    candidates = [evaluate_candidate(spec, corpus, probe_set, options, progress) for spec in specs]
    return BasesReport(
        options=options, corpus=corpus.name, corpus_chars=corpus.chars, probes_source=probe_set.source,
        candidates=candidates, seconds=time.perf_counter() - began,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


__all__ = [
    "BasesOptions",
    "BasesReport",
    "CandidateResult",
    "ContinuationSample",
    "CorpusText",
    "PerplexityFigures",
    "compare_bases",
    "evaluate_candidate",
    "load_corpus",
    "progress_units",
    "prompt_tokens",
]
