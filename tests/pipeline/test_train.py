"""`train_adapters` on a real tiny model: LoRA/DoRA/full, the saved artifacts, crash and resume."""

from __future__ import annotations

import json

import pytest

from pipeline.train import train_adapters
from pipeline.train_checkpoint import list_checkpoints
from pipeline.train_config import TrainConfigError, TrainError, resolve_config
from pipeline.train_progress import TRAIN_LOG_FILE, read_train_log
from tests.fakes.tiny_mlx_model import tiny_model_path  # noqa: F401 (fixture)
from tests.pipeline.test_train_data import write_chat_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class Crash(Exception):
    """Stands in for a kill: raised right after a given checkpoint is on disk."""


def run_config(tmp_path, model: str, **overrides) -> dict:
    data = tmp_path / "data"
    if not data.exists():
        write_chat_dataset(data, train=16, valid=8)
    base = {"model": model, "data": str(data), "adapters_dir": str(tmp_path / "adapters"), "iters": 6, "batch_size": 4,
            "steps_per_report": 2, "steps_per_eval": 3, "save_every": 2, "learning_rate": 1e-3, "val_batches": 2}
    return resolve_config(base, overrides)


def quiet(line: str) -> None:
    pass


def logits_for(model_path: str, adapter_path: str | None):
    import mlx.core as mx
    from mlx_lm.utils import load

    model, tokenizer = load(model_path, adapter_path=adapter_path)
    tokens = mx.array([tokenizer.encode("貼文標題：今日好熱")])
    return model(tokens)


def test_lora_run_writes_adapters_mlx_lm_loads(tmp_path, tiny_model_path):  # noqa: F811
    import mlx.core as mx

    config = run_config(tmp_path, tiny_model_path, name="lora")
    result = train_adapters(config, echo=quiet)
    run_dir = tmp_path / "adapters" / "lora"
    assert result.run_dir == run_dir and result.iterations == 6 and result.resumed_from == 0
    assert {"adapters.safetensors", "adapter_config.json", TRAIN_LOG_FILE, "checkpoints"} <= {p.name for p in run_dir.iterdir()}
    saved = json.loads((run_dir / "adapter_config.json").read_text())
    assert saved["fine_tune_type"] == "lora" and saved["num_layers"] == -1 and saved["lora_parameters"]["rank"] == 8
    assert saved["iters"] == 6 and saved["model"] == tiny_model_path

    rows = read_train_log(run_dir / TRAIN_LOG_FILE)
    train_rows = [row for row in rows if row.train_loss is not None]
    assert [row.step for row in train_rows] == [2, 4, 6]
    assert all(row.tokens_per_second > 0 and row.peak_memory_gb > 0 and row.learning_rate == pytest.approx(1e-3) for row in train_rows)
    val_rows = [row for row in rows if row.val_loss is not None]
    assert val_rows[0].step == 0 and val_rows[-1].val_loss < val_rows[0].val_loss  # it learned something
    assert [c.state.iteration for c in list_checkpoints(run_dir)] == [4, 6]  # keep_checkpoints = 2

    tuned = logits_for(tiny_model_path, str(run_dir))
    base = logits_for(tiny_model_path, None)
    assert mx.abs(tuned - base).max().item() > 1e-3


@pytest.mark.parametrize("fine_tune_type", ["dora", "full"])
def test_dora_and_full_fine_tuning_load_back(tmp_path, tiny_model_path, fine_tune_type):  # noqa: F811
    import mlx.core as mx

    config = run_config(tmp_path, tiny_model_path, name=fine_tune_type, fine_tune_type=fine_tune_type, iters=2, num_layers=1)
    result = train_adapters(config, echo=quiet)
    weights = mx.load(str(result.run_dir / "adapters.safetensors"))
    if fine_tune_type == "full":
        # Only the top layer trains: its own weights are saved, nothing of the frozen ones.
        assert weights and all(name.startswith("model.layers.3.") for name in weights)
        assert "model.layers.3.mlp.down_proj.weight" in weights
    else:
        assert any(name.endswith(".m") for name in weights)  # DoRA's magnitude vector
    tuned = logits_for(tiny_model_path, str(result.run_dir))
    assert mx.abs(tuned - logits_for(tiny_model_path, None)).max().item() > 1e-4


def test_resume_after_a_crash_continues_and_matches_an_uninterrupted_run(tmp_path, tiny_model_path):  # noqa: F811
    import mlx.core as mx

    common = {"iters": 8, "save_every": 4, "num_layers": 2, "lora_parameters": {"dropout": 0.1}}
    train_adapters(run_config(tmp_path, tiny_model_path, name="straight", **common), echo=quiet)

    def crash_after_first_checkpoint(line: str) -> None:
        if "checkpoint" in line and line.strip().startswith("step      4"):
            raise Crash(line)

    with pytest.raises(Crash):
        train_adapters(run_config(tmp_path, tiny_model_path, name="crashed", **common), echo=crash_after_first_checkpoint)
    crashed_dir = tmp_path / "adapters" / "crashed"
    assert [c.state.iteration for c in list_checkpoints(crashed_dir)] == [4]
    # The crashed run's newest adapters are usable as they are.
    assert (crashed_dir / "adapters.safetensors").read_bytes() == (crashed_dir / "checkpoints" / "0000004" / "adapters.safetensors").read_bytes()

    resumed = train_adapters(run_config(tmp_path, tiny_model_path, name="crashed", **common), resume=True, echo=quiet)
    assert (resumed.resumed_from, resumed.iterations) == (4, 8)
    assert [c.state.iteration for c in list_checkpoints(crashed_dir)] == [4, 8]

    # Same seed, same batches (skipped, not replayed), same optimizer moments, same dropout
    # masks: the adapters match the uninterrupted run's.
    straight = mx.load(str(tmp_path / "adapters" / "straight" / "adapters.safetensors"))
    after_crash = mx.load(str(crashed_dir / "adapters.safetensors"))
    assert straight.keys() == after_crash.keys()
    for name in straight:
        assert mx.allclose(straight[name], after_crash[name], atol=1e-6).item(), name
    optimizer = mx.load(str(crashed_dir / "checkpoints" / "0000008" / "optimizer.safetensors"))
    assert optimizer["step"].item() == 8  # Adam's step count continued, not restarted

    straight_log = [(r.step, r.train_loss) for r in read_train_log(tmp_path / "adapters" / "straight" / TRAIN_LOG_FILE) if r.train_loss]
    crashed_log = [(r.step, r.train_loss) for r in read_train_log(crashed_dir / TRAIN_LOG_FILE) if r.train_loss]
    assert [step for step, _ in crashed_log] == [2, 4, 6, 8]
    assert [loss for _, loss in crashed_log] == pytest.approx([loss for _, loss in straight_log], rel=1e-5)


def test_existing_run_needs_resume_or_overwrite(tmp_path, tiny_model_path):  # noqa: F811
    config = run_config(tmp_path, tiny_model_path, name="again", iters=2)
    train_adapters(config, echo=quiet)
    with pytest.raises(TrainError, match="--resume"):
        train_adapters(config, echo=quiet)
    lines: list[str] = []
    result = train_adapters(config, resume=True, echo=lines.append)  # already complete: nothing to do
    assert result.resumed_from == 2 and any("already trained" in line for line in lines)
    assert train_adapters(config, overwrite=True, echo=quiet).resumed_from == 0


def test_missing_dataset_is_a_clear_error_not_a_download(tmp_path, tiny_model_path):  # noqa: F811
    config = run_config(tmp_path, tiny_model_path, name="nodata", data=str(tmp_path / "no-such-dir"))
    with pytest.raises(TrainConfigError, match="no train.jsonl"):
        train_adapters(config, echo=quiet)
    with pytest.raises(TrainConfigError, match="layers"):
        train_adapters(run_config(tmp_path, tiny_model_path, name="deep", num_layers=99), echo=quiet)
