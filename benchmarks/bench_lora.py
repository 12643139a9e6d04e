"""LoRA training speed of `lilm train` vs plain `mlx_lm.lora`, same model, data and settings.

Both sides train LoRA on all layers of the same model, on the same chat dataset (HKCanCor
turns in `lilm dataset`'s format), with the same batch size, steps, rank and learning rate:
ours through `pipeline.train.train_adapters`, theirs through `mlx_lm.lora.train_model` (what
`mlx_lm.lora --train` runs). Both time their steps with mlx-lm's own trainer clock. Runs
alternate in one process, `--rounds` each, so machine load hits both alike; the first report
window of every run (kernel compilation) is left out, and the median run is reported.

Steps/s is the like-for-like figure: every step is one batch of the same size. Tokens/s is
shown as each side counts it: mlx-lm 0.32.2 counts one padding target per sample that
`lilm train` does not train on (see pipeline/train_loss.py), so ours is also shown counted
their way. CPU seconds per step (whole run: load, compile and steps) is a cross-check that
does not move with other processes' load as much as wall time does.

    .venv/bin/python benchmarks/bench_lora.py [--model model/lilm-tiny] [--steps 40] [--batch-size 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
import types
from pathlib import Path

from core.blas import preload_openblas

REPORT_EVERY = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model/lilm-tiny")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("OpenBLAS:", preload_openblas("auto") or "not found")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_lora_") as scratch:
        scratch = Path(scratch)
        data = write_hkcancor_dataset(scratch / "data", args.model)
        results: dict[str, list[dict]] = {"ours": [], "mlx": []}
        for round_number in range(args.rounds):
            for side in ("ours", "mlx") if round_number % 2 == 0 else ("mlx", "ours"):
                runner = run_ours if side == "ours" else run_mlx
                cpu_before = time.process_time()
                with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm's progress display
                    result = runner(args, data, scratch / f"{side}{round_number}")
                result["cpu_seconds_per_step"] = (time.process_time() - cpu_before) / args.steps
                results[side].append(result)
                print(f"round {round_number + 1} {side:>4}: {result['steps_per_second']:.2f} steps/s, "
                      f"{result['cpu_seconds_per_step'] * 1000:.0f} CPU ms/step", flush=True)
    summarize(args, results)
    print(f"wall time {time.perf_counter() - began:.0f}s")


def summarize(args, results: dict[str, list[dict]]) -> None:
    def median(side: str, key: str) -> float:
        return statistics.median(result[key] for result in results[side])

    ours_steps, mlx_steps = median("ours", "steps_per_second"), median("mlx", "steps_per_second")
    ours_tokens, mlx_tokens = median("ours", "tokens_per_second"), median("mlx", "tokens_per_second")
    ours_their_way = ours_tokens + args.batch_size * ours_steps  # + one padding target per sample
    ours_cpu, mlx_cpu = median("ours", "cpu_seconds_per_step"), median("mlx", "cpu_seconds_per_step")
    print(f"\nLoRA, all layers, {args.model}, batch {args.batch_size}, {args.steps} steps, median of {args.rounds} runs each")
    print(f"{'':>22} {'steps/s':>9} {'tokens/s':>10} {'CPU ms/step':>12}")
    print(f"{'lilm train':>22} {ours_steps:>9.2f} {ours_tokens:>10,.0f} {ours_cpu * 1000:>12.0f}   tokens: targets only")
    print(f"{'lilm train, mlx count':>22} {'':>9} {ours_their_way:>10,.0f} {'':>12}   tokens: targets + 1 padding per sample")
    print(f"{'mlx_lm.lora':>22} {mlx_steps:>9.2f} {mlx_tokens:>10,.0f} {mlx_cpu * 1000:>12.0f}   tokens: targets + 1 padding per sample")
    print(f"ours / mlx_lm: steps/s {ours_steps / mlx_steps:.3f}x, tokens/s (same count) {ours_their_way / mlx_tokens:.3f}x, "
          f"CPU per step {mlx_cpu / ours_cpu:.3f}x (higher is better)")
    ours_windows = [w for result in results["ours"] for w in result["windows"]]
    mlx_windows = [w for result in results["mlx"] for w in result["windows"]]
    print(f"steps/s over all {len(ours_windows)} report windows: median ours {statistics.median(ours_windows):.2f} vs "
          f"mlx_lm {statistics.median(mlx_windows):.2f} ({statistics.median(ours_windows) / statistics.median(mlx_windows):.3f}x); "
          f"best ours {max(ours_windows):.2f} vs mlx_lm {max(mlx_windows):.2f} ({max(ours_windows) / max(mlx_windows):.3f}x)")
    print(f"final train loss: ours {median('ours', 'final_loss'):.3f}, mlx_lm {median('mlx', 'final_loss'):.3f}")


def settings_for(args) -> dict:
    return {"batch_size": args.batch_size, "iters": args.steps, "num_layers": -1, "learning_rate": 1e-4,
            "steps_per_report": REPORT_EVERY, "steps_per_eval": args.steps * 10, "save_every": args.steps * 10,
            "lora_parameters": {"rank": 8, "dropout": 0.0, "scale": 20.0}, "max_seq_length": 2048, "seed": 0,
            "val_batches": 1}


def write_hkcancor_dataset(out_dir: Path, model: str, *, rows: int = 400) -> Path:
    """Chat rows from consecutive HKCanCor turns (title, content, reply), split train/valid.

    Only rows of 65-96 tokens are kept: every batch then pads to the same width (97), so every
    step does the same work on both sides whatever order their batches come in.
    """
    from mlx_lm.utils import load

    from core.prompt import SYSTEM_MESSAGE, format_user_message
    from pipeline.hkcancor import load_hkcancor

    _, tokenizer = load(model)
    samples = []
    for conversation in load_hkcancor():
        turns = [u.text for u in conversation.utterances if 4 <= len(u.text) <= 40]
        for i in range(0, len(turns) - 2, 3):
            user = format_user_message("吹水台", turns[i], turns[i + 1])
            sample = {"messages": [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": user},
                                   {"role": "assistant", "content": turns[i + 2]}]}
            if 64 < len(tokenizer.apply_chat_template(sample["messages"])) <= 96:
                samples.append(sample)
    samples = samples[:rows]
    out_dir.mkdir(parents=True)
    cut = len(samples) * 9 // 10
    for name, part in (("train", samples[:cut]), ("valid", samples[cut:])):
        (out_dir / f"{name}.jsonl").write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in part), encoding="utf-8")
    return out_dir


def run_ours(args, data: Path, scratch: Path) -> dict:
    from pipeline.train import train_adapters
    from pipeline.train_config import resolve_config
    from pipeline.train_progress import TRAIN_LOG_FILE, read_train_log

    config = resolve_config(settings_for(args), {"model": args.model, "data": str(data), "adapters_dir": str(scratch), "name": "bench"})
    result = train_adapters(config, echo=lambda line: None)
    rows = [row for row in read_train_log(result.run_dir / TRAIN_LOG_FILE) if row.train_loss is not None]
    return {"steps_per_second": result.iterations_per_second, "final_loss": rows[-1].train_loss,
            "windows": list(result.window_iterations_per_second[1:]),
            "tokens_per_second": statistics.mean(row.tokens_per_second for row in rows[1:])}


def run_mlx(args, data: Path, scratch: Path) -> dict:
    from mlx_lm import lora
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.datasets import load_dataset
    from mlx_lm.utils import load

    class Collect(TrainingCallback):
        def __init__(self) -> None:
            self.reports: list[dict] = []

        def on_train_loss_report(self, train_info: dict) -> None:
            self.reports.append(train_info)

    options = types.SimpleNamespace(**{**lora.CONFIG_DEFAULTS, **settings_for(args), "model": args.model, "data": str(data),
                                       "train": True, "adapter_path": str(scratch / "adapters")})
    model, tokenizer = load(args.model)
    train_set, valid_set, _ = load_dataset(options, tokenizer)
    collect = Collect()
    lora.train_model(options, model, train_set, valid_set, training_callback=collect)
    steady = collect.reports[1:]
    return {"steps_per_second": statistics.mean(r["iterations_per_second"] for r in steady),
            "windows": [r["iterations_per_second"] for r in steady],
            "tokens_per_second": statistics.mean(r["tokens_per_second"] for r in steady),
            "final_loss": collect.reports[-1]["train_loss"]}


if __name__ == "__main__":
    main()
