"""The engine's decode step inside mlx-lm's `BatchGenerator`, without per-row work.

`BatchGenerator` keeps doing what it is good at: admitting sequences, prefilling prompts in
chunks, merging and filtering the batched KV caches. Its decode step (`GenerationBatch`)
runs every row's logits processors one row at a time, slices out a log-probability vector per
row and evaluates them all, each step: on a small model that costs as much as the model. The
classes here replace that step with one forward pass plus one compiled sampling graph for all
rows (core/engine_sampling.py). Every row carries a `RowSampling` as its only "logits
processor": that is how its settings travel through `BatchGenerator.insert`.

Written against mlx-lm 0.32.2 (pinned): `use_lean_decoding` checks the internals it relies on.
Runs only on the engine's worker thread (imports mlx).
"""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.generate import GenerationBatch, PromptProcessingBatch, _extend_cache

from core.engine_sampling import (
    DEFAULT_CANDIDATES,
    RowBatch,
    RowSampling,
    history_matrix,
    push_history,
)


def use_lean_decoding(generator, *, candidates: int = DEFAULT_CANDIDATES) -> None:
    """Make a fresh `BatchGenerator` decode with `LeanGenerationBatch`."""
    for name in ("_prompt_batch", "_generation_batch", "_unprocessed_sequences", "model", "sampler", "prefill_step_size"):
        if not hasattr(generator, name):
            raise RuntimeError(f"this mlx-lm's BatchGenerator has no {name!r}: lean decoding needs mlx-lm 0.32.2")
    if len(generator._prompt_batch) or len(generator._generation_batch) or generator._unprocessed_sequences:
        raise RuntimeError("lean decoding must be installed before anything is inserted")
    prompts = LeanPromptBatch.empty(generator.model, generator.sampler, prefill_step_size=generator.prefill_step_size)
    prompts.candidates = candidates
    generator._prompt_batch = prompts
    generator._generation_batch = LeanGenerationBatch.start(
        generator.model, uids=[], inputs=None, prompt_cache=[], tokens=[], rows=[],
        max_tokens=[], stop_sequences=[], candidates=candidates,
    )


class LeanPromptBatch(PromptProcessingBatch):
    """Prefill as mlx-lm does; hands finished prompts to a `LeanGenerationBatch`."""

    candidates = DEFAULT_CANDIDATES

    def _copy(self):  # `split` copies the batch: keep the setting on the copy
        new = super()._copy()
        new.candidates = self.candidates
        return new

    def generate(self, tokens):
        if any(len(t) > 1 for t in tokens):
            self.prompt([t[:-1] for t in tokens])
        generation = LeanGenerationBatch.start(
            self.model,
            uids=self.uids,
            inputs=mx.array([t[-1] for t in tokens]),
            prompt_cache=self.prompt_cache,
            tokens=self.tokens,
            rows=[_row_of(processors) for processors in self.logits_processors],
            max_tokens=self.max_tokens,
            stop_sequences=self.stop_sequences,
            candidates=self.candidates,
        )
        self.uids, self.prompt_cache, self.tokens = [], [], []
        self.samplers, self.logits_processors, self.max_tokens = [], [], []
        return generation


def _row_of(processors) -> RowSampling:
    if len(processors) != 1 or not isinstance(processors[0], RowSampling):
        raise TypeError("with lean decoding every sequence's logits_processors must be [RowSampling]")
    return processors[0]


class LeanGenerationBatch(GenerationBatch):
    """Same interface and bookkeeping as mlx-lm's `GenerationBatch` (uids, tokens, caches,
    max_tokens, stop matchers; responses carry no log-probabilities), one graph per step.

    Like mlx-lm, the step is pipelined: the token after the current one is computed while the
    current one is handed out. Between steps `tokens[i]` holds what row i's cache holds,
    `_next_tokens[i]` is its next input and `_history[i]` the last tokens of `tokens[i]`.

    Unlike mlx-lm, a row that joins is not run through the model on its own first: its next
    input is its prompt's last token, fed with everyone else's at the next step (`_joining`),
    and nothing is handed out for it that step. One forward pass per join saved."""

    @classmethod
    def start(cls, model, *, uids, inputs, prompt_cache, tokens, rows, max_tokens, stop_sequences, candidates):
        batch = cls.__new__(cls)
        batch.model = model
        batch.uids = list(uids)
        batch.prompt_cache = prompt_cache
        batch.tokens = tokens
        batch.rows = list(rows)
        batch.max_tokens = list(max_tokens)
        batch.stop_sequences = list(stop_sequences)
        batch.candidates = candidates
        batch._matchers = [stops.matcher() for stops in batch.stop_sequences]
        batch._num_tokens = [0] * len(batch.uids)
        batch._next_tokens = inputs
        batch._history = history_matrix(_contexts(batch.tokens, inputs)) if batch.uids else None
        batch._row_batch = None
        batch._joining = [True] * len(batch.uids)
        return batch

    def __len__(self):
        return len(self.uids)

    def extend(self, batch):
        if not batch.uids:
            return
        if not self.uids:
            self.prompt_cache = batch.prompt_cache
            self._next_tokens, self._history = batch._next_tokens, batch._history
        else:
            self.prompt_cache = _extend_cache(self.prompt_cache, batch.prompt_cache)
            self._next_tokens = mx.concatenate([self._next_tokens, batch._next_tokens])
            self._history = mx.concatenate([self._history, batch._history])
        self.uids.extend(batch.uids)
        self.tokens.extend(batch.tokens)
        self.rows.extend(batch.rows)
        self.max_tokens.extend(batch.max_tokens)
        self.stop_sequences.extend(batch.stop_sequences)
        self._matchers.extend(batch._matchers)
        self._num_tokens.extend(batch._num_tokens)
        self._joining.extend(batch._joining)
        self._row_batch = None

    def filter(self, keep):
        self.uids = [self.uids[i] for i in keep]
        if not keep:
            self.prompt_cache.clear()
            self._next_tokens = self._history = None
        else:
            for layer in self.prompt_cache:
                layer.filter(keep)
            index = mx.array(keep)
            self._next_tokens, self._history = self._next_tokens[index], self._history[index]
        for name in ("tokens", "rows", "max_tokens", "stop_sequences", "_matchers", "_num_tokens", "_joining"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in keep])
        self._row_batch = None

    def _advance(self):
        """Start computing every row's token after `_next_tokens`; returns the current ones."""
        if self._row_batch is None:
            self._row_batch = RowBatch(self.rows, candidates=self.candidates)
        current = self._next_tokens
        self._history = push_history(self._history, current)
        logits = self.model(current[:, None], cache=self.prompt_cache)[:, -1, :]
        self._next_tokens = self._row_batch.draw(logits, self._history)
        mx.async_eval(self._next_tokens, self._history)
        return current

    def _step(self) -> list[int]:
        current = self._advance().tolist()
        for held, token in zip(self.tokens, current):
            held.append(token)
        return current

    def next(self):
        responses = []
        while self.uids and not responses:  # a step where every row was joining hands out nothing
            responses = self._responses(self._step())
        return responses

    def _responses(self, tokens):
        keep, responses = [], []
        for i, (uid, token) in enumerate(zip(self.uids, tokens)):
            if self._joining[i]:  # `token` was its prompt's last
                self._joining[i] = False
                keep.append(i)
                continue
            self._num_tokens[i] += 1
            finish_reason = "length" if self._num_tokens[i] >= self.max_tokens[i] else None
            if self._matchers[i].advance(token):
                finish_reason = "stop"
            if finish_reason is None:
                keep.append(i)
            all_tokens = self.tokens[i] if finish_reason else None
            responses.append(self.Response(uid, token, None, finish_reason, None, all_tokens))
        if len(keep) < len(self.uids):
            self.filter(keep)
        return responses


def _contexts(tokens, inputs) -> list[list[int]]:
    """What each row's cache holds; a row with an empty cache stands in its first input (the
    step pushes that input onto the history, and a repeated token changes nothing)."""
    return [held or [first] for held, first in zip(tokens, inputs.tolist())]
