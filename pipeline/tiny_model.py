"""Build the embedded default model: a tiny Qwen2 trained from scratch on HKCanCor.

One call (`build_tiny_model`) loads the corpus, cuts synthetic threads, trains the tokenizer,
trains the model with a small mlx loop and writes a directory `mlx_lm.load` opens. Training
rows are the chat prompts of `core.prompt.build_messages` (loss on the reply and its
<|im_end|> only) mixed with plain conversation text for fluency.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from core.prompt import SYSTEM_MESSAGE, build_messages, format_user_message
from pipeline.hkcancor import Conversation, load_hkcancor
from pipeline.synthetic_threads import SyntheticThread, build_thread_split
from pipeline.tokenizer_build import IM_END, build_tokenizer, character_coverage_texts

BUILD_INFO_FILE = "lilm_build.json"


@dataclass(frozen=True)
class TinyConfig:
    """Model shape and training recipe; saved whole in lilm_build.json."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    vocab_size: int = 6000  # requested; the trained tokenizer decides the final size
    rope_theta: float = 10000.0
    max_seq_len: int = 192  # training rows are cut to this many tokens
    steps: int = 800
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    lm_fraction: float = 0.6  # share of rows that are plain conversation text
    eval_every: int = 200
    eval_rows: int = 0  # held-out rows scored (0: all)
    disk_dtype: str = "float32"  # float16 halves the size but generates ~3x slower on CPU
    held_out_fraction: float = 0.1
    seed: int = 0


PRESETS: dict[str, TinyConfig] = {
    "tiny": TinyConfig(),
    # For tests: same pipeline, a smaller model and a few dozen steps.
    "quick": TinyConfig(
        hidden_size=128, num_layers=2, intermediate_size=352, vocab_size=2000,
        max_seq_len=256, steps=40, batch_size=8, learning_rate=3e-3, warmup_steps=5, eval_every=0, eval_rows=160,
    ),
}


@dataclass(frozen=True)
class TrainProgress:
    """One progress report of the training loop."""

    step: int
    steps: int
    loss: float
    learning_rate: float
    tokens_per_sec: float
    elapsed: float
    held_out_loss: float | None = None


@dataclass(frozen=True)
class TinyBuildResult:
    """Figures of one build; the same facts are in `out_dir/lilm_build.json`."""

    out_dir: Path
    config: TinyConfig
    parameters: int
    vocab_size: int
    train_threads: int
    held_out_threads: int  # scored held-out threads
    lm_rows: int
    trained_tokens: int
    random_init_held_out_loss: float
    final_train_loss: float
    final_held_out_loss: float
    seconds: float
    disk_bytes: int  # weights, config and tokenizer (everything but lilm_build.json)
    history: list[TrainProgress] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Row:
    """A token sequence; next-token loss counts for targets at index >= loss_from."""

    tokens: list[int]
    loss_from: int


def model_config(cfg: TinyConfig, *, vocab_size: int, im_end_id: int, endoftext_id: int) -> dict:
    """config.json of the Qwen2 model (what `mlx_lm.load` reads)."""
    return {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "intermediate_size": cfg.intermediate_size,
        "vocab_size": vocab_size,
        "rms_norm_eps": 1e-6,
        "rope_theta": cfg.rope_theta,
        # The longest context seen in training: prompts beyond it get much worse replies.
        "max_position_embeddings": cfg.max_seq_len,
        "tie_word_embeddings": True,
        "eos_token_id": [im_end_id, endoftext_id],
        "bos_token_id": None,
        "pad_token_id": endoftext_id,
        "torch_dtype": cfg.disk_dtype,
    }


def chat_row(thread: SyntheticThread, tokenizer, *, max_len: int) -> Row:
    """Prompt via the shared prompt builder and chat template; loss on reply + <|im_end|>.

    The prompt is encoded exactly as at inference (generation prompt included), then the
    reply tokens and the end-of-turn token follow.
    """
    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    messages = build_messages(
        thread.category, thread.title, thread.content, count_tokens=count, budget=max_len, reply=thread.reply
    )
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True)
    prompt = list(getattr(prompt, "input_ids", prompt))
    answer = tokenizer.encode(thread.reply, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids(IM_END)]
    tokens = (prompt + answer)[:max_len]
    return Row(tokens=tokens, loss_from=len(prompt) - 1)


def text_rows(conversations: Sequence[Conversation], tokenizer, *, chunk_len: int) -> list[Row]:
    """Plain conversation text cut into chunks of `chunk_len` tokens, loss on every token."""
    rows = []
    for conv in conversations:
        # Per line: pre-tokens never cross a newline, so this equals encoding the whole text.
        ids = [i for u in conv.utterances for i in tokenizer.encode(u.text + "\n", add_special_tokens=False)]
        for start in range(0, max(1, len(ids) - chunk_len // 4), chunk_len):
            rows.append(Row(tokens=ids[start : start + chunk_len], loss_from=0))
    return rows


@dataclass(frozen=True)
class Batch:
    """Padded inputs plus the flat positions whose next token is scored.

    Only scored positions go through the output layer: chat rows score ~15 of ~90 tokens,
    and the vocabulary softmax is the dearest op on CPU.
    """

    inputs: object  # mx.array (B, L) int32
    positions: object  # mx.array (N,) flat indices into B*L
    targets: object  # mx.array (N,) int32
    weights: object  # mx.array (N,) float32, 0 for padding entries

    @property
    def size(self) -> int:
        return self.inputs.size


def make_batch(rows: Sequence[Row], *, pad_id: int, multiple: int = 32) -> Batch:
    """Pad rows to a multiple of `multiple` (fewer distinct shapes, fewer recompiles).

    Row r scores targets t with loss_from <= t < len - 1: padding never counts.
    """
    import mlx.core as mx
    import numpy as np

    width = multiple * math.ceil((max(len(r.tokens) for r in rows) - 1) / multiple)
    ids = np.full((len(rows), width + 1), pad_id, dtype=np.int32)
    positions, targets = [], []
    for i, row in enumerate(rows):
        ids[i, : len(row.tokens)] = row.tokens
        scored = np.arange(row.loss_from, len(row.tokens) - 1)
        positions.append(i * width + scored)
        targets.append(ids[i, scored + 1])
    positions, targets = np.concatenate(positions), np.concatenate(targets)
    n = len(positions)
    padded = multiple * 2 * math.ceil(max(n, 1) / (multiple * 2))
    weights = np.zeros(padded, dtype=np.float32)
    weights[:n] = 1.0
    positions = np.pad(positions, (0, padded - n)).astype(np.int32)
    targets = np.pad(targets, (0, padded - n)).astype(np.int32)
    return Batch(mx.array(ids[:, :-1]), mx.array(positions), mx.array(targets), mx.array(weights))


def masked_loss(model, inputs, positions, targets, weights):
    """Mean cross-entropy over the scored positions, and their count."""
    import mlx.core as mx
    from mlx import nn

    hidden = model.model(inputs)
    hidden = hidden.reshape(-1, hidden.shape[-1])[positions]
    head = model.lm_head if hasattr(model, "lm_head") else model.model.embed_tokens.as_linear
    logits = head(hidden).astype(mx.float32)
    ntoks = weights.sum()
    loss = (nn.losses.cross_entropy(logits, targets) * weights).sum() / mx.maximum(ntoks, 1)
    return loss, ntoks


def _batch_args(batch: Batch) -> tuple:
    return batch.inputs, batch.positions, batch.targets, batch.weights


def evaluate(model, rows: Sequence[Row], *, pad_id: int, batch_size: int = 32) -> float:
    """Token-weighted mean loss of `model` on `rows` (sorted by length: less padding)."""
    rows = sorted(rows, key=lambda r: len(r.tokens))
    total, count = 0.0, 0.0
    for start in range(0, len(rows), batch_size):
        loss, ntoks = masked_loss(model, *_batch_args(make_batch(rows[start : start + batch_size], pad_id=pad_id)))
        total += loss.item() * ntoks.item()
        count += ntoks.item()
    return total / max(count, 1.0)


def batch_order(chat: Sequence[Row], text: Sequence[Row], cfg: TinyConfig, rng) -> list[list[Row]]:
    """Batches for the whole run: seeded draws mixing chat and text rows, grouped by length."""
    n_rows = cfg.steps * cfg.batch_size
    take_text = rng.random(n_rows) < cfg.lm_fraction
    pools = {False: list(chat), True: list(text)}
    cursors = {False: len(chat), True: len(text)}
    drawn = []
    for is_text in take_text:
        is_text = bool(is_text) and bool(text)
        if cursors[is_text] >= len(pools[is_text]):  # new epoch over this pool
            rng.shuffle(pools[is_text])
            cursors[is_text] = 0
        drawn.append(pools[is_text][cursors[is_text]])
        cursors[is_text] += 1
    # Sort within windows of 16 batches so batches hold similar lengths (less padding).
    window = cfg.batch_size * 16
    batches = []
    for start in range(0, n_rows, window):
        chunk = sorted(drawn[start : start + window], key=lambda r: len(r.tokens))
        batches += [chunk[i : i + cfg.batch_size] for i in range(0, len(chunk), cfg.batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def learning_rate_schedule(cfg: TinyConfig):
    """Linear warmup then cosine decay to 10% of the peak."""
    import mlx.optimizers as optim

    warmup = optim.linear_schedule(cfg.learning_rate * 0.01, cfg.learning_rate, max(1, cfg.warmup_steps))
    decay = optim.cosine_decay(cfg.learning_rate, max(1, cfg.steps - cfg.warmup_steps), cfg.learning_rate * 0.1)
    return optim.join_schedules([warmup, decay], [max(1, cfg.warmup_steps)])


def train(
    model,
    batches: Sequence[Sequence[Row]],
    cfg: TinyConfig,
    *,
    pad_id: int,
    held_out: Sequence[Row] = (),
    on_progress: Callable[[TrainProgress], None] | None = None,
    report_every: int = 25,
) -> tuple[list[TrainProgress], int]:
    """AdamW over `batches` (one step each); returns the progress history and tokens trained."""
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx import nn

    schedule = learning_rate_schedule(cfg)
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
    loss_and_grad = nn.value_and_grad(model, masked_loss)
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(inputs, positions, targets, weights):
        (loss, ntoks), grads = loss_and_grad(model, inputs, positions, targets, weights)
        grads, _ = optim.clip_grad_norm(grads, max_norm=1.0)
        optimizer.update(model, grads)
        return loss, ntoks

    model.train()
    history: list[TrainProgress] = []
    start = window_start = time.perf_counter()
    window_tokens, window_loss, window_steps, trained_tokens = 0, 0.0, 0, 0
    for i, rows in enumerate(batches, start=1):
        batch = make_batch(rows, pad_id=pad_id)
        loss, ntoks = step(*_batch_args(batch))
        mx.eval(state, loss, ntoks)
        window_loss += loss.item()
        window_steps += 1
        window_tokens += batch.size
        trained_tokens += batch.size
        evaluate_now = held_out and cfg.eval_every and i % cfg.eval_every == 0
        if i % report_every == 0 or i == len(batches) or evaluate_now:
            now = time.perf_counter()
            progress = TrainProgress(
                step=i,
                steps=len(batches),
                loss=window_loss / window_steps,
                learning_rate=float(schedule(i)),
                tokens_per_sec=window_tokens / max(now - window_start, 1e-9),
                elapsed=now - start,
                held_out_loss=evaluate(model, held_out, pad_id=pad_id) if evaluate_now else None,
            )
            history.append(progress)
            if on_progress:
                on_progress(progress)
            window_start, window_tokens, window_loss, window_steps = time.perf_counter(), 0, 0.0, 0
    model.eval()
    return history, trained_tokens


def tokenizer_texts(conversations: Sequence[Conversation], threads: Sequence[SyntheticThread]) -> list[str]:
    """What the tokenizer learns from: conversation text, the prompt text the model sees, and
    every character once more on its own so each becomes a whole token."""
    texts = [c.text for c in conversations]
    texts += [SYSTEM_MESSAGE + "\n" + format_user_message(t.category, t.title, t.content) for t in threads]
    return texts + character_coverage_texts(texts)


def _check_out_dir(out_dir: Path) -> None:
    """Refuse early to overwrite anything but an earlier build of ours."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / BUILD_INFO_FILE).exists():
        raise FileExistsError(f"{out_dir} exists and is not a tiny-model build ({BUILD_INFO_FILE} missing)")


def _replace_dir(staging: Path, out_dir: Path) -> None:
    _check_out_dir(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


@dataclass(frozen=True)
class _BuildData:
    model_config: dict
    pad_id: int
    chat_train: list[Row]
    chat_held: list[Row]
    text_train: list[Row]
    held_out_conversations: list[str]
    train_threads: int


def _prepare(cfg: TinyConfig, staging: Path, conversations: Sequence[Conversation], log) -> _BuildData:
    """Threads, tokenizer (saved into `staging` with config.json) and encoded training rows."""
    from mlx_lm.utils import load_tokenizer, save_config

    split = build_thread_split(conversations, seed=cfg.seed, held_out_fraction=cfg.held_out_fraction)
    log(f"data: {len(split.train)} train / {len(split.held_out)} held-out threads "
        f"from {len(split.train_conversations)} / {len(split.held_out_conversations)} conversations")
    texts = tokenizer_texts(split.train_conversations, split.train)
    _, built = build_tokenizer(texts, staging, vocab_size=cfg.vocab_size)
    config = model_config(cfg, vocab_size=built.vocab_size, im_end_id=built.im_end_id, endoftext_id=built.endoftext_id)
    save_config(dict(config), staging / "config.json")
    # Load back the way runtime does, so rows are encoded by the runtime tokenizer itself.
    tokenizer = load_tokenizer(staging, eos_token_ids=config["eos_token_id"])
    return _BuildData(
        model_config=config,
        pad_id=built.endoftext_id,
        chat_train=[chat_row(t, tokenizer, max_len=cfg.max_seq_len) for t in split.train],
        chat_held=[chat_row(t, tokenizer, max_len=cfg.max_seq_len) for t in split.held_out[: cfg.eval_rows or None]],
        text_train=text_rows(split.train_conversations, tokenizer, chunk_len=cfg.max_seq_len // 2),
        held_out_conversations=[c.name for c in split.held_out_conversations],
        train_threads=len(split.train),
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    preset: str = "tiny",
    seed: int = 0,
    steps: int | None = None,
    batch_size: int | None = None,
    config: TinyConfig | None = None,
    conversations: Sequence[Conversation] | None = None,
    log: Callable[[str], None] = print,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TinyBuildResult:
    """Train the tiny Cantonese model from scratch and save it to `out_dir`.

    `config` (else `PRESETS[preset]`) is the recipe; `seed`, `steps` and `batch_size`
    override it. The directory is written beside `out_dir` first and moved in at the end.
    """
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.models.qwen2 import Model, ModelArgs
    from mlx_lm.utils import save_model

    if config is None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        config = PRESETS[preset]
    cfg = replace(config, seed=seed, steps=steps or config.steps, batch_size=batch_size or config.batch_size)
    began = time.perf_counter()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    staging = out_dir.with_name(out_dir.name + ".building")
    if staging.exists():
        shutil.rmtree(staging)

    data = _prepare(cfg, staging, list(conversations) if conversations is not None else load_hkcancor(), log)
    mx.random.seed(cfg.seed)
    model = Model(ModelArgs.from_dict(data.model_config))
    mx.eval(model.parameters())
    n_params = sum(v.size for _, v in tree_flatten(model.parameters()))
    log(f"model: {n_params / 1e6:.2f}M parameters, vocab {data.model_config['vocab_size']}, "
        f"{len(data.chat_train)} chat rows + {len(data.text_train)} text rows")
    random_loss = evaluate(model, data.chat_held, pad_id=data.pad_id)

    def report(p: TrainProgress) -> None:
        held = f" held-out {p.held_out_loss:.3f}" if p.held_out_loss is not None else ""
        log(f"step {p.step}/{p.steps} loss {p.loss:.3f}{held} lr {p.learning_rate:.2e} "
            f"{p.tokens_per_sec:,.0f} tok/s {p.elapsed:.0f}s")
        if on_progress:
            on_progress(p)

    batches = batch_order(data.chat_train, data.text_train, cfg, np.random.default_rng(cfg.seed))
    history, trained_tokens = train(model, batches, cfg, pad_id=data.pad_id, held_out=data.chat_held, on_progress=report)
    # Same metric on both sides: reply-token loss on as many train threads as held-out ones.
    train_sample = data.chat_train[:: max(1, len(data.chat_train) // max(1, len(data.chat_held)))]
    final_train = evaluate(model, train_sample, pad_id=data.pad_id)
    final_held = evaluate(model, data.chat_held, pad_id=data.pad_id)

    model.update(tree_map(lambda w: w.astype(getattr(mx, cfg.disk_dtype)), model.parameters()))
    save_model(staging, model)
    result = TinyBuildResult(
        out_dir=out_dir, config=cfg, parameters=n_params, vocab_size=data.model_config["vocab_size"],
        train_threads=data.train_threads, held_out_threads=len(data.chat_held), lm_rows=len(data.text_train),
        trained_tokens=trained_tokens, random_init_held_out_loss=random_loss, final_train_loss=final_train,
        final_held_out_loss=final_held, seconds=time.perf_counter() - began,
        disk_bytes=sum(p.stat().st_size for p in staging.iterdir()), history=history,
    )
    info = {k: v for k, v in asdict(result).items() if k not in {"out_dir", "history"}}
    info["held_out_conversations"] = data.held_out_conversations
    info["loss_curve"] = [asdict(p) for p in history]
    (staging / BUILD_INFO_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    _replace_dir(staging, out_dir)
    log(f"saved {out_dir} ({result.disk_bytes / 1e6:.1f} MB) in {result.seconds:.0f}s: held-out loss "
        f"{final_held:.3f} (random init {random_loss:.3f}), train {final_train:.3f}")
    return result


__all__ = ["PRESETS", "TinyBuildResult", "TinyConfig", "TrainProgress", "build_tiny_model"]
