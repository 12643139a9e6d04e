"""The engine's worker thread: the only code that touches the model.

Loop: drop cancelled jobs -> admit waiting jobs into free batch slots -> tell waiting jobs
their position -> one `BatchGenerator.next()` step -> hand text to callers. Any exception in
a step fails the jobs in that batch and starts a fresh generator, so one bad request never
wedges the worker. A lone one-candidate request skips the batch (core/engine_solo.py) until
another job arrives, which moves it into the batch first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from core.blas import set_serving_threads
from core.engine import EngineConfig, EngineStats
from core.engine_job import (
    DONE,
    GenerationJob,
    Piece,
    QueuePosition,
    engine_closed_error,
    merge_pieces,
    post_events,
)
from core.engine_prompt_cache import PrefixCache, prefill
from core.engine_queue import AdmissionQueue
from core.errors import EngineBusy, ModelError

log = logging.getLogger(__name__)

Loader = Callable[[], tuple[object, object]]
_SOLO = -1  # key of the solo sequence in _active (BatchGenerator's uids count from 0)


@dataclass
class _Sequence:
    """One candidate of a running job, as the batch knows it."""

    job: GenerationJob
    index: int
    detokenizer: object
    started: bool = False  # has any text gone out yet (the first piece is sent at once)


@dataclass
class _Counters:
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    refused_busy: int = 0
    restarts: int = 0
    generated_tokens: int = 0
    prompt_tokens: int = 0
    solo_started: int = 0
    solo_moved: int = 0


@dataclass(frozen=True)
class SoloStats:
    """How often the solo fast path ran, and how often a second job moved it into the batch."""

    started: int
    moved_to_batch: int


class EngineWorker:
    """Owns the model on one thread; `submit`/`cancel`/`close` are safe from any thread."""

    def __init__(self, loader: Loader, *, config: EngineConfig) -> None:
        self.config = config
        self.queue: AdmissionQueue[GenerationJob] = AdmissionQueue(max_waiting=config.max_waiting)
        self.model = None
        self.tokenizer = None
        self._loader = loader
        self._ready: Future = Future()
        self._cancelled: deque[GenerationJob] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._counters = _Counters()
        self._thread = threading.Thread(target=self._main, name="lilm-engine", daemon=True)
        # Worker-thread state.
        self._active: dict[int, _Sequence] = {}
        self._running: dict[GenerationJob, list[int]] = {}
        self._unfinished: dict[GenerationJob, int] = {}
        self._events: list[tuple[GenerationJob, object]] = []
        self._only_text = True  # no event in _events needs delivering at once
        self._flushed_at = 0.0
        self._prefixes: PrefixCache | None = None
        self._solo = None  # the SoloSequence decoding alone, if any (key _SOLO in _active)

    # --- any thread -------------------------------------------------------------------

    def start(self) -> Future:
        """Start the thread; the future resolves to (model, tokenizer) once loaded."""
        self._thread.start()
        return self._ready

    def submit(self, job: GenerationJob) -> int:
        """Queue a job; returns jobs ahead of it. Raises EngineBusy when the queue is full."""
        if self._closing or not self._thread.is_alive():
            raise engine_closed_error()
        try:
            ahead = self.queue.push(job, size=job.size)
        except EngineBusy:
            self._counters.refused_busy += 1
            raise
        self._wake.set()
        return ahead

    def cancel(self, job: GenerationJob) -> None:
        self._cancelled.append(job)
        self._wake.set()

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        if not self._thread.is_alive():
            wait_for_os_thread_exit(self._thread)

    def solo_stats(self) -> SoloStats:
        return SoloStats(started=self._counters.solo_started, moved_to_batch=self._counters.solo_moved)

    def stats(self) -> EngineStats:
        prefixes = self._prefixes.stats() if self._prefixes is not None else None
        c = self._counters
        return EngineStats(
            running_sequences=len(self._active),
            waiting_jobs=len(self.queue),
            finished=c.finished,
            failed=c.failed,
            cancelled=c.cancelled,
            timed_out=c.timed_out,
            refused_busy=c.refused_busy,
            restarts=c.restarts,
            generated_tokens=c.generated_tokens,
            prompt_tokens=c.prompt_tokens,
            prefix_hits=prefixes.hits if prefixes else 0,
            prefix_misses=prefixes.misses if prefixes else 0,
        )

    # --- worker thread ----------------------------------------------------------------

    def _main(self) -> None:
        try:
            set_serving_threads(self.config.blas_threads)
            self.model, self.tokenizer = self._loader()
        except BaseException as error:  # noqa: BLE001 (handed to `start`'s awaiter, never lost)
            self._ready.set_exception(error)
            return
        if self.config.prefix_cache:
            self._prefixes = PrefixCache(
                self.model, max_entries=self.config.prefix_cache_entries, prefill_step=self.config.prefill_step
            )
        self._ready.set_result((self.model, self.tokenizer))
        generator = self._new_generator()
        try:
            generator = self._serve(generator)
        finally:
            self._shut_down(generator)

    def _serve(self, generator):
        while not self._closing:
            try:
                self._drop_cancelled(generator)
                self._admit(generator)
                self._report_positions()
                if not self._active:
                    self._flush(force=True)
                    self._wake.wait()
                    self._wake.clear()
                    continue
                if self._solo is not None:
                    self._step_solo()
                else:
                    self._step(generator)
                self._flush()
            except Exception as error:  # a broken step must not take the worker down
                log.exception("generation step failed; failing %d running job(s), starting a new batch", len(self._running))
                self._fail_running(ModelError(f"generation failed: {type(error).__name__}: {error}"))
                _close_quietly(generator)
                generator = self._new_generator()
                self._counters.restarts += 1
                self._flush(force=True)
        return generator

    def _new_generator(self):
        import mlx.core as mx
        from mlx_lm.generate import BatchGenerator

        from core.engine_batch import use_lean_decoding

        generator = BatchGenerator(
            self.model,
            completion_batch_size=self.config.max_batch,
            prefill_batch_size=min(self.config.prefill_batch, self.config.max_batch),
            prefill_step_size=self.config.prefill_step,
            # This thread's own default stream (as mlx_lm.server does): prefix prefills and
            # decode steps share it, and no thread-local stream outlives the worker.
            stream=mx.default_stream(mx.default_device()),
        )
        use_lean_decoding(generator, candidates=self.config.sampling_candidates)
        return generator

    def _drop_cancelled(self, generator) -> None:
        while self._cancelled:
            job = self._cancelled.popleft()
            if self.queue.remove(job):
                self._count_stopped(job)
            elif job in self._running:
                self._remove_running(job, generator)
                self._count_stopped(job)

    def _count_stopped(self, job: GenerationJob) -> None:
        if job.timed_out:
            self._counters.timed_out += 1
        else:
            self._counters.cancelled += 1

    def _admit(self, generator) -> None:
        free = self.config.max_batch - len(self._active)
        jobs = self.queue.pop_fitting(free_slots=free)
        for job in jobs:
            if job.cancelled or job.timed_out:
                self._count_stopped(job)
                continue
            if self._solo is not None:  # the job joins the solo sequence: in the batch
                self._solo_to_batch(generator)
            try:
                if len(jobs) == 1 and self._may_run_solo(job):
                    self._start_solo(job)
                else:
                    self._start(job, generator)
            except Exception as error:
                log.exception("could not start %r", job)
                self._fail(job, ModelError(f"could not start generation: {type(error).__name__}: {error}"), generator)

    def _start(self, job: GenerationJob, generator) -> None:
        from mlx_lm.generate import StopSequences

        from core.engine_sampling import RowSampling

        rows = [[RowSampling.from_params(p)] for p in job.params]  # raises for invalid settings
        cached_len, cache = self._prompt_cache_for(job)
        rest = job.prompt[cached_len:]
        n = job.size
        # Read per job: callers (and tests) may change the tokenizer's stop tokens at run time.
        stops = StopSequences([(token,) for token in self.tokenizer.eos_token_ids])
        uids = generator.insert(
            [list(rest) for _ in range(n)],
            max_tokens=[p.max_tokens for p in job.params],
            caches=[cache] * n if cache is not None else None,
            all_tokens=[list(job.prompt[:cached_len]) for _ in range(n)],
            logits_processors=rows,
            stop_sequences=[stops] * n,
        )
        self._counters.prompt_tokens += n * len(rest)
        self._running[job] = list(uids)
        self._unfinished[job] = n
        for index, uid in enumerate(uids):
            self._active[uid] = _Sequence(job, index, self.tokenizer.detokenizer)

    def _prompt_cache_for(self, job: GenerationJob) -> tuple[int, list | None]:
        """(tokens covered, cache): the system prefix from the LRU, and for N candidates the
        whole prompt prefilled once so the N sequences only decode."""
        prompt = job.prompt
        base, base_len = None, 0
        if self._prefixes is not None and 0 < job.prefix_len < len(prompt):
            misses = self._prefixes.misses
            base, base_len = self._prefixes.get(prompt[: job.prefix_len]), job.prefix_len
            if self._prefixes.misses > misses:
                self._counters.prompt_tokens += base_len
        if job.size > 1 and len(prompt) - 1 > base_len:
            shared = prefill(self.model, prompt[:-1], base=base, base_len=base_len, step=self.config.prefill_step)
            self._counters.prompt_tokens += len(prompt) - 1 - base_len
            return len(prompt) - 1, shared
        return base_len, base

    def _may_run_solo(self, job: GenerationJob) -> bool:
        return self.config.solo_fast_path and job.size == 1 and not self._active and not len(self.queue)

    def _start_solo(self, job: GenerationJob) -> None:
        from core.engine_solo import SoloSequence

        cached_len, cache = self._prompt_cache_for(job)
        self._solo = SoloSequence(
            self.model,
            prompt=job.prompt,
            params=job.params[0],
            base=cache,
            base_len=cached_len,
            stop_tokens=set(self.tokenizer.eos_token_ids),
            candidates=self.config.sampling_candidates,
            prefill_step=self.config.prefill_step,
        )
        self._counters.prompt_tokens += len(job.prompt) - cached_len
        self._counters.solo_started += 1
        self._running[job] = [_SOLO]
        self._unfinished[job] = 1
        self._active[_SOLO] = _Sequence(job, 0, self.tokenizer.detokenizer)

    def _step_solo(self) -> None:
        result = self._solo.step()
        if result is None:  # a prefill chunk
            return
        token, finish_reason = result
        self._emit(_SOLO, token, finish_reason, None)
        if finish_reason is not None:
            self._solo = None

    def _solo_to_batch(self, generator) -> None:
        """Move the solo sequence into the batch, where the next job joins it."""
        from mlx_lm.generate import StopSequences

        from core.engine_solo import continue_in_batch

        sequence = self._active[_SOLO]
        try:
            stops = StopSequences([(token,) for token in self.tokenizer.eos_token_ids])
            uid = continue_in_batch(self._solo, generator, stops=stops)
        except Exception as error:
            log.exception("could not move %r into the batch", sequence.job)
            self._fail(sequence.job, ModelError(f"generation failed: {type(error).__name__}: {error}"), generator)
            return
        self._solo = None
        self._active[uid] = self._active.pop(_SOLO)
        self._running[sequence.job] = [uid]
        self._counters.solo_moved += 1

    def _step(self, generator) -> None:
        progress, responses = generator.next()
        if not progress and not responses:  # nothing left in any stage: our bookkeeping drifted
            raise RuntimeError(f"the batch holds none of {len(self._active)} running sequences")
        for response in responses:
            self._emit(response.uid, response.token, response.finish_reason, generator)

    def _emit(self, uid: int, token: int, finish_reason: str | None, generator) -> None:
        """Hand one generated token of sequence `uid` to its job."""
        sequence = self._active.get(uid)
        if sequence is None:
            return
        job = sequence.job
        try:
            text = self._decode(sequence, token, finish_reason)
        except Exception as error:
            log.exception("could not decode output of %r", job)
            self._fail(job, ModelError(f"could not decode output: {type(error).__name__}: {error}"), generator)
            return
        self._counters.generated_tokens += 1
        if text:
            self._events.append((job, Piece(sequence.index, text)))
            if not sequence.started:  # time to first text is what a waiting user feels
                sequence.started, self._only_text = True, False
        if finish_reason is not None:
            del self._active[uid]
            self._unfinished[job] -= 1
            if self._unfinished[job] == 0:
                del self._unfinished[job], self._running[job]
                self._events.append((job, DONE))
                self._only_text = False
                self._counters.finished += 1

    @staticmethod
    def _decode(sequence: _Sequence, token: int, finish_reason: str | None) -> str:
        detokenizer = sequence.detokenizer
        if finish_reason != "stop":  # the stop token itself is never shown
            detokenizer.add_token(token)
        if finish_reason is not None:
            detokenizer.finalize()
        return detokenizer.last_segment

    def _remove_running(self, job: GenerationJob, generator) -> None:
        uids = self._running.pop(job, [])
        self._unfinished.pop(job, None)
        for uid in uids:
            self._active.pop(uid, None)
        if _SOLO not in self._active:
            self._solo = None
        if uids and generator is not None:
            generator.remove(uids)

    def _fail(self, job: GenerationJob, error: BaseException, generator) -> None:
        self._remove_running(job, generator)
        self._events.append((job, error))
        self._only_text = False
        self._counters.failed += 1

    def _fail_running(self, error: ModelError) -> None:
        for job in list(self._running):
            self._fail(job, ModelError(str(error)), None)
        self._active.clear()

    def _report_positions(self) -> None:
        for job, ahead in self.queue.moved():
            self._events.append((job, QueuePosition(ahead)))
            self._only_text = False

    def _flush(self, *, force: bool = False) -> None:
        """Hand events to callers; text alone waits up to `stream_interval`, merged, so the
        callers' loop (and the GIL) is not woken once per token per request."""
        if not self._events:
            return
        now = time.monotonic()
        if not force and now - self._flushed_at < self.config.stream_interval and self._only_text:
            return
        events, self._events, self._only_text, self._flushed_at = self._events, [], True, now
        try:
            events = merge_pieces(events)
        except Exception:  # never lose events: deliver them unmerged
            log.exception("could not merge text pieces")
        for job in post_events(events):
            job.cancelled = True
            self._cancelled.append(job)

    def _shut_down(self, generator) -> None:
        """Fail whatever is left, release the batch and the model (on this thread)."""
        self._closing = True  # also when the loop died of a bug: refuse new work from now on
        for job in self.queue.drain():
            self._events.append((job, engine_closed_error()))
            self._counters.failed += 1
        for job in list(self._running):
            self._events.append((job, engine_closed_error()))
            self._counters.failed += 1
        self._running.clear()
        self._active.clear()
        self._solo = None
        self._flush(force=True)
        _close_quietly(generator)
        if self._prefixes is not None:
            self._prefixes.clear()


def _close_quietly(generator) -> None:
    try:
        generator.close()
    except Exception:
        log.exception("closing a batch generator failed")


def wait_for_os_thread_exit(thread: threading.Thread, *, limit: float = 5.0) -> None:
    """After `thread.join()`: wait until the OS thread is really gone (Linux /proc).

    `Thread.join` returns before the thread's C++ thread-locals are destroyed; mlx's compile
    cache is one and needs the interpreter, so a program that exits right after `aclose`
    could crash in it. Once the thread is gone, exiting is safe.
    """
    native_id = thread.native_id
    task = Path(f"/proc/self/task/{native_id}")
    deadline = time.monotonic() + limit
    while native_id is not None and task.parent.is_dir() and task.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
