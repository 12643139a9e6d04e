"""`compare_bases` on real tiny models: a briefly trained model against its random-initialised twin."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import DEFAULT_MODEL_DIR
from pipeline.bases import (
    BasesOptions,
    compare_bases,
    load_corpus,
    progress_units,
    prompt_tokens,
    run_continuations,
)
from pipeline.bases_models import CandidateSpec, load_candidate
from pipeline.bases_probes import cloze_prompt, load_probes, parse_probes
from pipeline.cantonese_judge import LABELS
from tests.pipeline.test_bases_models import trained_and_random

SMALL_OPTIONS = BasesOptions(window=512, stride=256, max_chars=1500, continuation_samples=2, continuation_tokens=8,
                             answer_tokens=6)


def small_probe_set():
    """Two continuation prompts and three probes of the shipped file."""
    shipped = load_probes()
    data = {
        "continuation_instruction": shipped.continuation_instruction,
        "continuations": [{"id": c.id, "text": c.text} for c in shipped.continuations[:2]],
        "probes": [
            {"id": p.id, "topic": p.topic, "question": p.question, "options": list(p.options), "answer": p.answer,
             **({"numeric_answer": p.numeric_answer} if p.numeric_answer is not None else {})}
            for p in (shipped.probes[0], shipped.probes[1], shipped.probes[-1])
        ],
    }
    return parse_probes(data, source="small")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return trained_and_random(tmp_path_factory)


def test_default_corpus_is_the_embedded_models_held_out_conversations():
    names = json.loads((DEFAULT_MODEL_DIR / "lilm_build.json").read_text(encoding="utf-8"))["held_out_conversations"]
    corpus = load_corpus()
    assert len(corpus.documents) == len(names) >= 3
    assert corpus.chars > 10_000
    everything = load_corpus("hkcancor")
    assert len(everything.documents) > 5 * len(names)
    assert set(corpus.documents) < set(everything.documents)


def test_corpus_cut_and_text_files(tmp_path):
    assert load_corpus(max_chars=1000).chars == 1000
    path = tmp_path / "mine.txt"
    path.write_text("今日好熱。\n我哋去游水啦。", encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.documents == ("今日好熱。\n我哋去游水啦。",) and corpus.name == str(path)
    with pytest.raises(ConfigError, match="nothing.txt"):
        load_corpus(str(tmp_path / "nothing.txt"))
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no text"):
        load_corpus(str(tmp_path / "empty.txt"))
    with pytest.raises(ConfigError, match="held_out_conversations"):
        load_corpus(build_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_trained_model_beats_its_random_twin_and_every_figure_is_measured(pair, tmp_path):
    trained_dir, random_dir = pair
    corpus, probe_set = load_corpus(max_chars=SMALL_OPTIONS.max_chars), small_probe_set()
    specs = [CandidateSpec.parse(str(trained_dir)), CandidateSpec.parse(str(random_dir)),
             CandidateSpec.parse(str(tmp_path / "no-such-model"))]
    stages = []
    report = compare_bases(specs, corpus=corpus, probe_set=probe_set, options=SMALL_OPTIONS, progress=stages.append)

    trained, random_model, missing = report.candidates
    assert "config.json" in missing.error and missing.perplexity is None
    assert len(stages) == 3 * progress_units(corpus, probe_set)
    assert stages[0] == "trained load" and stages[-1] == "no-such-model skipped"

    assert trained.perplexity.bits_per_char < random_model.perplexity.bits_per_char
    assert trained.perplexity.perplexity < 0.5 * random_model.perplexity.perplexity
    for result in (trained, random_model):
        assert result.error is None
        p = result.perplexity
        assert (p.window, p.stride) == (192, 96)  # clamped to the fake's context, ratio kept
        assert p.chars == corpus.chars == 1500 and p.tokens > 500
        assert math.isclose(p.bits_per_char, p.nll * p.tokens / math.log(2) / p.chars)
        assert result.facts.parameters == random_model.facts.parameters > 10_000
        assert result.facts.disk_bytes > 4 * result.facts.parameters  # float32 weights
        assert len(result.continuations) == 2 * 2
        assert {s.label for s in result.continuations} <= set(LABELS.values())
        assert result.continuation_summary.count == 4
        assert [o.probe_id for o in result.probes] == [p.id for p in probe_set.probes]
        assert result.probe_score.count == 3 and 0 <= result.probe_score.loglik_accuracy <= 1
        assert result.generated_tokens > 0 and result.tokens_per_sec > 0
        assert result.peak_memory_bytes >= result.generation_peak_memory_bytes > result.facts.disk_bytes // 2
        assert result.seconds > 0
    assert report.corpus == "hkcancor-held-out" and report.probes_source == "small"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_option_scores_are_the_models_own_log_likelihoods(pair):
    import mlx.core as mx

    from pipeline.bases import run_probes

    candidate = load_candidate(CandidateSpec.parse(str(pair[0])))
    probe_set = small_probe_set()
    outcomes, _ = run_probes(candidate, probe_set, SMALL_OPTIONS)
    probe = probe_set.probes[0]
    prompt = prompt_tokens(candidate.tokenizer, cloze_prompt(probe))
    for option, per_char in zip(probe.options, outcomes[0].option_nll_per_char):
        ids = prompt + candidate.tokenizer.encode(option, add_special_tokens=False)
        logits = candidate.model(mx.array([ids[:-1]])).astype(mx.float32)[0]
        log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        nll = -sum(log_probs[t - 1, ids[t]].item() for t in range(len(prompt), len(ids)))
        assert per_char == pytest.approx(nll / len(option), rel=1e-4)
    best = min(range(len(probe.options)), key=lambda i: outcomes[0].option_nll_per_char[i])
    assert outcomes[0].loglik_choice == best


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_prompts_use_the_chat_template_or_plain_text_and_samples_repeat_with_the_seed(pair):
    candidate = load_candidate(CandidateSpec.parse(str(pair[0])))
    tokenizer = candidate.tokenizer
    chat = prompt_tokens(tokenizer, "今日食咩？")
    assert tokenizer.decode(chat).startswith("<|im_start|>user\n今日食咩？<|im_end|>")
    assert tokenizer.decode(chat).endswith("<|im_start|>assistant\n")

    probe_set = small_probe_set()
    first, _, _ = run_continuations(candidate, probe_set, SMALL_OPTIONS)
    again, _, _ = run_continuations(candidate, probe_set, SMALL_OPTIONS)
    assert [s.text for s in first] == [s.text for s in again]

    tokenizer._tokenizer.chat_template = None  # a base model without a template
    candidate.facts = replace(candidate.facts, has_chat_template=False)
    assert prompt_tokens(tokenizer, "今日食咩？") == list(tokenizer.encode("今日食咩？"))
    plain, _, _ = run_continuations(candidate, probe_set, SMALL_OPTIONS)
    assert [s.prompt for s in plain] == [s.prompt for s in first]
    assert [s.text for s in plain] != [s.text for s in first]  # a different prompt, same seeds


def test_small_probe_set_is_a_real_subset():
    probes = small_probe_set()
    assert [p.id for p in probes.probes][-1] == load_probes().probes[-1].id
    assert Path(load_probes().source).name == "base_probes.json"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_quantized_model_is_compared_like_any_other(pair, tmp_path):
    from tests.pipeline.test_bases_models import quantized_copy

    trained_dir, random_dir = pair
    quantized_dir = quantized_copy(trained_dir, tmp_path / "trained-8bit", bits=8)
    options = replace(SMALL_OPTIONS, continuation_samples=1)
    report = compare_bases([CandidateSpec.parse(str(d)) for d in (trained_dir, quantized_dir, random_dir)],
                           corpus=load_corpus(max_chars=800), probe_set=small_probe_set(), options=options)
    full, quantized, random_model = report.candidates
    assert quantized.error is None and quantized.facts.quantization == "8-bit"
    # 8-bit weights read the text almost as well as float32, far better than random weights.
    assert quantized.perplexity.bits_per_char == pytest.approx(full.perplexity.bits_per_char, rel=0.05)
    assert quantized.perplexity.bits_per_char < random_model.perplexity.bits_per_char
    assert len(quantized.continuations) == 2 and quantized.tokens_per_sec > 0
