"""Lean decoding (core/engine_batch.py) inside mlx-lm's `BatchGenerator` on a real
(random-weight) Qwen2, driven directly: every row gives exactly the tokens it gives decoded
alone (`SoloSequence`), whatever shares its batch and whenever it joins or leaves."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from core.generation import SamplingParams
from tests.fakes.tiny_mlx_model import random_model_path  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SYSTEM = {"role": "system", "content": "你係一個 LIHKG 討論區嘅用戶，用廣東話回覆一句。"}
TEXTS = [
    "貼文類別：吹水台\n貼文標題：今晚食咩\n貼文內容：\n好肚餓",
    "貼文類別：時事台\n貼文標題：巴士又加價\n貼文內容：\n頂唔順，次次都係咁，點算好",
    "好",
    "貼文類別：創意台\n貼文標題：寫首詩",
]
GREEDY = SamplingParams(max_tokens=12, temperature=0.0)
SEEDED = SamplingParams(max_tokens=30, temperature=1.0, seed=5)
PENALIZED = SamplingParams(max_tokens=20, temperature=0.8, top_p=0.9, repetition_penalty=1.3, seed=9)
HOT = SamplingParams(max_tokens=25, temperature=1.5, top_p=1.0, repetition_penalty=1.0, seed=77)
PARAMS = [GREEDY, SEEDED, PENALIZED]


@pytest.fixture(scope="module")
def loaded(random_model_path):  # noqa: F811
    from mlx_lm import load

    model, tokenizer = load(random_model_path)
    prompts = [list(tokenizer.apply_chat_template([SYSTEM, {"role": "user", "content": t}], add_generation_prompt=True)) for t in TEXTS]
    assert len({len(p) for p in prompts}) == len(prompts)  # different lengths: the prefill pads
    return model, prompts


def run_alone(model, prompt, params, *, stop_tokens=frozenset(), candidates: int = 128) -> tuple[list[int], str]:
    """The tokens `prompt` gives decoded alone, and why it ended."""
    from core.engine_solo import SoloSequence

    solo = SoloSequence(model, prompt=prompt, params=params, base=None, base_len=0, stop_tokens=set(stop_tokens),
                        candidates=candidates, prefill_step=4096)
    tokens = []
    while True:
        result = solo.step()
        if result is not None:
            tokens.append(result[0])
            if result[1] is not None:
                return tokens, result[1]


@pytest.fixture(scope="module")
def alone(loaded):
    """Solo tokens per (prompt index, params), computed once."""
    model, prompts = loaded
    cache: dict = {}

    def get(index: int, params: SamplingParams) -> list[int]:
        if (index, params) not in cache:
            tokens, reason = run_alone(model, prompts[index], params)
            assert (len(tokens), reason) == (params.max_tokens, "length")
            cache[index, params] = tokens
        return cache[index, params]

    return get


def new_generator(model, *, candidates: int = 128, **options):
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator

    from core.engine_batch import use_lean_decoding

    generator = BatchGenerator(model, stream=mx.default_stream(mx.default_device()), **options)
    use_lean_decoding(generator, candidates=candidates)
    return generator


def insert(generator, prompts, params, *, stops=None) -> list[int]:
    from mlx_lm.generate import StopSequences

    from core.engine_sampling import RowSampling

    return generator.insert(
        prompts,
        max_tokens=[p.max_tokens for p in params],
        logits_processors=[[RowSampling.from_params(p)] for p in params],
        stop_sequences=stops or [StopSequences([]) for _ in prompts],
    )


@dataclass
class Run:
    """What the generator handed out, per uid."""

    tokens: dict[int, list[int]] = field(default_factory=dict)
    finished: dict[int, str] = field(default_factory=dict)
    finished_at: dict[int, int] = field(default_factory=dict)  # the step each uid finished on
    all_tokens: dict[int, list[int]] = field(default_factory=dict)
    steps: int = 0

    def drive(self, generator, *, uids, steps: int | None = None) -> None:
        """Call `generator.next()` until every uid finished (or `steps` times)."""
        taken = 0
        while len(self.finished) < len(uids) and (steps is None or taken < steps):
            taken += 1
            self.steps += 1
            assert self.steps < 500, "the generator never finished"
            responses = generator.next()[1]
            seen = [r.uid for r in responses]
            assert len(seen) == len(set(seen)), "a uid answered twice in one step"
            for r in responses:
                assert r.uid in uids and r.uid not in self.finished, r.uid
                self.tokens.setdefault(r.uid, []).append(r.token)
                if r.finish_reason is not None:
                    self.finished[r.uid] = r.finish_reason
                    self.finished_at[r.uid] = self.steps
                    self.all_tokens[r.uid] = list(r.all_tokens)
                else:
                    assert r.all_tokens is None


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1]], ids=["in-order", "rotated"])
def test_rows_decoded_together_give_exactly_their_solo_tokens(loaded, alone, order):
    model, prompts = loaded
    rows = [(i, PARAMS[i]) for i in order]
    generator = new_generator(model)
    uids = insert(generator, [prompts[i] for i, _ in rows], [p for _, p in rows])
    assert uids == [0, 1, 2]
    run = Run()
    run.drive(generator, uids=uids)
    generator.close()
    for uid, (i, params) in zip(uids, rows):
        assert run.tokens[uid] == alone(i, params), (uid, i)
        assert run.finished[uid] == "length"
    # Inserted together, the rows start together and leave at their own max_tokens.
    start = {run.finished_at[uid] - params.max_tokens for uid, (_, params) in zip(uids, rows)}
    assert len(start) == 1
    assert len(generator._generation_batch) == 0 and len(generator._prompt_batch) == 0
    # The sampled rows really sample: not what greedy decoding of the same prompts gives.
    assert alone(1, SEEDED)[:12] != alone(1, GREEDY)
    assert alone(2, PENALIZED)[:12] != alone(2, GREEDY)


@pytest.mark.parametrize("steps_before", [1, 4, 13])
def test_a_row_inserted_mid_decode_gives_its_solo_tokens(loaded, alone, steps_before):
    model, prompts = loaded
    generator = new_generator(model)
    first = insert(generator, prompts[:2], [SEEDED, GREEDY])
    run = Run()
    run.drive(generator, uids=first, steps=steps_before)
    assert 0 < len(run.tokens.get(0, [])) < SEEDED.max_tokens or steps_before == 1
    assert len(run.finished) < 2
    later = insert(generator, prompts[2:4], [PENALIZED, HOT])
    assert later == [2, 3]
    run.drive(generator, uids=first + later)
    generator.close()
    expected = {0: alone(0, SEEDED), 1: alone(1, GREEDY), 2: alone(2, PENALIZED), 3: alone(3, HOT)}
    assert run.tokens == expected
    assert run.finished == dict.fromkeys(expected, "length")
    # The late rows joined while the first ones were decoding.
    assert run.finished_at[2] - PENALIZED.max_tokens > run.finished_at[0] - SEEDED.max_tokens


def test_a_row_joining_after_others_left_gives_its_solo_tokens(loaded, alone):
    model, prompts = loaded
    generator = new_generator(model)
    first = insert(generator, [prompts[1]], [GREEDY])
    run = Run()
    run.drive(generator, uids=first)
    assert run.tokens[0] == alone(1, GREEDY) and len(generator._generation_batch) == 0
    later = insert(generator, [prompts[0], prompts[3]], [HOT, SEEDED])
    run.drive(generator, uids=first + later)
    generator.close()
    assert run.tokens[later[0]] == alone(0, HOT)
    assert run.tokens[later[1]] == alone(3, SEEDED)


def first_new(tokens: list[int], *, at_least: int) -> int:
    """The first index >= at_least whose token does not occur earlier."""
    return next(k for k in range(at_least, len(tokens)) if tokens[k] not in tokens[:k])


def first_new_pair(tokens: list[int], *, at_least: int) -> int:
    """The first index j >= at_least whose pair (tokens[j], tokens[j+1]) does not occur earlier."""
    pairs = list(itertools.pairwise(tokens))
    return next(j for j in range(at_least, len(pairs)) if pairs[j] not in pairs[:j])


def test_a_stop_sequence_ends_its_row_and_the_others_continue(loaded, alone):
    from mlx_lm.generate import StopSequences

    model, prompts = loaded
    # Sampled rows: the random model's greedy replies repeat one token.
    full0, full1, full2 = alone(0, SEEDED), alone(1, PENALIZED), alone(2, HOT)
    k = first_new(full0, at_least=4)
    j = first_new_pair(full1, at_least=6)
    absent = next(t for t in range(1000) if t not in full2)
    stops = [StopSequences([[full0[k]]]), StopSequences([[full1[j], full1[j + 1]]]), StopSequences([[absent]])]

    generator = new_generator(model)
    uids = insert(generator, prompts[:3], [SEEDED, PENALIZED, HOT], stops=stops)
    run = Run()
    run.drive(generator, uids=uids)
    generator.close()
    assert run.tokens[0] == full0[: k + 1]
    assert run.tokens[1] == full1[: j + 2]
    assert run.tokens[2] == full2
    assert run.finished == {0: "stop", 1: "stop", 2: "length"}
    assert run.finished_at[0] < run.finished_at[2] and run.finished_at[1] < run.finished_at[2]
    # A solo sequence stops on the same token.
    assert run_alone(model, prompts[0], SEEDED, stop_tokens={full0[k]}) == (full0[: k + 1], "stop")


def test_the_candidates_setting_reaches_rows_prefilled_in_chunks(loaded, alone):
    model, prompts = loaded
    # With one candidate a sampled row can only take the most likely token: greedy decoding.
    hot = SamplingParams(max_tokens=15, temperature=2.0, top_p=1.0, repetition_penalty=1.2, seed=3)
    as_greedy = SamplingParams(max_tokens=15, temperature=0.0, repetition_penalty=1.2)
    generator = new_generator(model, candidates=1, prefill_step_size=8, prefill_batch_size=2)
    uids = insert(generator, prompts[:3], [hot, hot, hot])
    run = Run()
    run.drive(generator, uids=uids, steps=3)
    uids += insert(generator, [prompts[3]], [hot])
    run.drive(generator, uids=uids)
    generator.close()
    for uid, prompt in zip(uids, prompts):
        assert run.tokens[uid] == run_alone(model, prompt, as_greedy)[0], uid
    assert run_alone(model, prompts[0], hot)[0] != run.tokens[0]  # with 128 candidates the same row samples


def test_installing_into_a_generator_holding_work_raises(loaded):
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator

    from core.engine_batch import use_lean_decoding

    model, prompts = loaded
    for steps in (1, 3):  # prefilling, then decoding
        generator = BatchGenerator(model, stream=mx.default_stream(mx.default_device()))
        generator.insert([prompts[0]], max_tokens=[20])
        for _ in range(steps):
            generator.next()
        with pytest.raises(RuntimeError, match="before anything is inserted"):
            use_lean_decoding(generator)
        generator.close()


def test_installing_right_after_an_insert_raises(loaded):
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator

    from core.engine_batch import use_lean_decoding

    model, prompts = loaded
    generator = BatchGenerator(model, stream=mx.default_stream(mx.default_device()))
    generator.insert([prompts[0]], max_tokens=[20])
    try:
        with pytest.raises(RuntimeError):
            use_lean_decoding(generator)
    finally:
        generator.close()


def _processors(kind: str):
    from mlx_lm.sample_utils import make_repetition_penalty

    from core.engine_sampling import RowSampling

    row = RowSampling.from_params(GREEDY)
    return {"none": None, "empty": [], "mlx-lm": [make_repetition_penalty(1.1)], "two": [row, row]}[kind]


@pytest.mark.parametrize("kind", ["none", "empty", "mlx-lm", "two"])
def test_a_row_without_exactly_one_row_sampling_is_refused_when_its_prompt_finishes(loaded, kind):
    model, prompts = loaded
    generator = new_generator(model)
    generator.insert([prompts[0]], max_tokens=[10], logits_processors=[_processors(kind)] if kind != "none" else None)
    with pytest.raises(TypeError, match="RowSampling"):
        for _ in range(5):
            generator.next()
    generator.close()


def test_a_finished_rows_all_tokens_are_its_prompt_and_reply(loaded):
    model, prompts = loaded
    generator = new_generator(model)
    uids = insert(generator, prompts[:2], [GREEDY, SEEDED])
    run = Run()
    run.drive(generator, uids=uids, steps=4)
    uids += insert(generator, [prompts[2]], [PENALIZED])  # one joining mid-decode
    run.drive(generator, uids=uids)
    generator.close()
    for uid, prompt in zip(uids, prompts):
        assert run.all_tokens[uid] == prompt + run.tokens[uid], uid
