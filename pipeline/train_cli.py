"""`lilm train`, `lilm fuse`, `lilm quantize`: fine-tune, fuse adapters, quantize.

`register(subparsers)` adds the three subcommands; `python -m pipeline.train_cli train ...`
runs them without the `lilm` wrapper (what `mlx.launch` starts on every rank).
"""

from __future__ import annotations

import argparse
import sys

from pipeline.train_config import CONFIG_DEFAULTS

# CLI flag -> config key for the plain (scalar) options; None defaults so YAML values survive.
TRAIN_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("--model", str, "base model: a local mlx directory or a Hugging Face id (default: LILM_MODEL)"),
    ("--data", str, "dataset directory with train.jsonl / valid.jsonl (from `lilm dataset`)"),
    ("--name", str, "run name: artifacts go to <adapters-dir>/<name>"),
    ("--adapters-dir", str, "where runs are kept"),
    ("--fine-tune-type", str, "lora, dora or full"),
    ("--optimizer", str, "adam, adamw, muon, sgd or adafactor"),
    ("--num-layers", int, "layers to train, counted from the top; -1 = all"),
    ("--batch-size", int, "samples per step, over all ranks"),
    ("--iters", int, "total training steps of the run"),
    ("--val-batches", int, "validation batches per evaluation; -1 = all"),
    ("--learning-rate", float, "learning rate"),
    ("--steps-per-report", int, "steps between progress lines"),
    ("--steps-per-eval", int, "steps between validations"),
    ("--save-every", int, "steps between checkpoints; a multiple of --steps-per-report"),
    ("--keep-checkpoints", int, "checkpoints kept on disk"),
    ("--max-seq-length", int, "longer samples are truncated"),
    ("--grad-accumulation-steps", int, "batches per optimizer update"),
    ("--seed", int, "seed for adapter init, batch order and dropout"),
)
LORA_OPTIONS = (("--lora-rank", int, "rank"), ("--lora-scale", float, "scale"), ("--lora-dropout", float, "dropout"))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train`, `fuse` and `quantize` to a parent parser's subparsers."""
    _register_train(subparsers)
    _register_fuse(subparsers)
    _register_quantize(subparsers)


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="LoRA/DoRA/full fine-tuning on a `lilm dataset` directory",
        description="Fine-tune a model with mlx-lm's tuner. Options: CLI > YAML (-c) > defaults; the "
        "resolved config is saved as <adapters-dir>/<name>/adapter_config.json.",
    )
    parser.add_argument("-c", "--config", help="YAML file with training options (mlx-lm's keys)")
    for flag, kind, text in TRAIN_OPTIONS:
        default = CONFIG_DEFAULTS.get(flag[2:].replace("-", "_"))
        parser.add_argument(flag, type=kind, default=None, help=text if default is None else f"{text} (default: {default})")
    for flag, kind, key in LORA_OPTIONS:
        parser.add_argument(flag, type=kind, default=None, help=f"LoRA {key} (default: {CONFIG_DEFAULTS['lora_parameters'][key]})")
    parser.add_argument("--grad-checkpoint", action="store_true", default=None, help="gradient checkpointing: less memory, slower")
    parser.add_argument("--mask-prompt", action="store_true", default=None, help="train on the assistant reply only")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of --name")
    parser.add_argument("--overwrite", action="store_true", help="start again over an existing run of --name")
    parser.set_defaults(run=run_train)


def _register_fuse(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fuse", help="fuse trained adapters into the base model: model/<name>",
        description="Merge adapters/<name> into its base model and save a standalone model directory.",
    )
    parser.add_argument("--name", default="lilm", help="run name under --adapters-dir (default: %(default)s)")
    parser.add_argument("--adapters-dir", default="adapters", help="(default: %(default)s)")
    parser.add_argument("--adapter-path", default=None, help="adapter directory (default: <adapters-dir>/<name>)")
    parser.add_argument("--model", default=None, help="base model (default: the one the adapters were trained on)")
    parser.add_argument("--out", default=None, help="output directory (default: model/<name>)")
    parser.set_defaults(run=run_fuse)


def _register_quantize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quantize", help="write a 4- or 8-bit quantized copy of a model directory",
        description="Quantize a model directory (e.g. model/<name> from `lilm fuse`) with mlx-lm.",
    )
    parser.add_argument("model", help="model directory to quantize")
    parser.add_argument("--out", default=None, help="output directory (default: <model>-q<bits>)")
    parser.add_argument("--bits", type=int, choices=(2, 3, 4, 5, 6, 8), default=4, help="bits per weight (default: %(default)s)")
    parser.add_argument("--group-size", type=int, choices=(32, 64, 128), default=64, help="weights per scale (default: %(default)s)")
    parser.set_defaults(run=run_quantize)


def cli_overrides(args: argparse.Namespace) -> dict:
    """The config keys the command line set (None where it said nothing)."""
    overrides = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in TRAIN_OPTIONS}
    overrides["grad_checkpoint"] = args.grad_checkpoint
    overrides["mask_prompt"] = args.mask_prompt
    lora = {key: getattr(args, flag[2:].replace("-", "_")) for flag, _, key in LORA_OPTIONS}
    overrides["lora_parameters"] = {key: value for key, value in lora.items() if value is not None} or None
    return overrides


def resolve_train_config(args: argparse.Namespace, settings: object = None) -> dict:
    """CLI > YAML > (on --resume) the run's saved config > CONFIG_DEFAULTS; model falls back to LILM_MODEL."""
    from pipeline.train_config import (
        adapter_dir,
        load_yaml_config,
        read_saved_config,
        resolve_config,
    )

    cli = cli_overrides(args)
    yaml_layer = load_yaml_config(args.config) if args.config else {}
    saved = {}
    if args.resume:
        where = resolve_config(yaml_layer, cli)  # only to find the run directory
        saved = read_saved_config(adapter_dir(where))
    config = resolve_config(saved, yaml_layer, cli)
    if config["model"] is None:
        config["model"] = getattr(settings, "model", None) or _default_model()
    return config


def run_train(args: argparse.Namespace, settings: object = None) -> int:
    """Resolve the config and train; print a one-line summary. Returns 0."""
    import mlx.core as mx

    from pipeline.train import train_adapters

    config = resolve_train_config(args, settings)
    result = train_adapters(config, resume=args.resume, overwrite=args.overwrite)
    if mx.distributed.init().rank() != 0:
        return 0  # under mlx.launch, rank 0 speaks for all
    loss = f"train loss {result.final_train_loss:.4f}" if result.final_train_loss is not None else "no new steps"
    val = f", val loss {result.final_val_loss:.4f}" if result.final_val_loss is not None else ""
    print(f"trained {result.run_dir}: {result.iterations} iterations (from {result.resumed_from}), {loss}{val}, {result.seconds:.0f}s")
    return 0


def run_fuse(args: argparse.Namespace, settings: object = None) -> int:
    from pathlib import Path

    from pipeline.fuse import fuse_adapters

    adapter_path = Path(args.adapter_path) if args.adapter_path else Path(args.adapters_dir) / args.name
    out = Path(args.out) if args.out else Path("model") / adapter_path.name
    result = fuse_adapters(adapter_path=adapter_path, out_dir=out, base_model=args.model)
    print(f"fused {result.adapter_path} into {result.base_model} -> {result.out_dir} ({result.fused_layers} layers fused)")
    return 0


def run_quantize(args: argparse.Namespace, settings: object = None) -> int:
    from pipeline.quantize import quantize_model_dir

    out = args.out or f"{str(args.model).rstrip('/')}-q{args.bits}"
    result = quantize_model_dir(args.model, out_dir=out, bits=args.bits, group_size=args.group_size)
    print(
        f"quantized {result.source} -> {result.out_dir}: {result.bits}-bit, group {result.group_size}, "
        f"{result.disk_bytes / 1e6:.1f} MB ({result.source_disk_bytes / 1e6:.1f} MB before)"
    )
    return 0


def _default_model() -> str:
    from core.settings import DEFAULT_MODEL_DIR

    return str(DEFAULT_MODEL_DIR)


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.train_cli {train,fuse,quantize} ...` (errors: one line, exit 1)."""
    from core.blas import preload_openblas
    from core.errors import LilmError

    preload_openblas("auto")
    parser = argparse.ArgumentParser(prog="python -m pipeline.train_cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        from core.settings import load_settings

        settings = load_settings()
    except LilmError:
        settings = None
    try:
        return args.run(args, settings)
    except LilmError as error:
        print(f"{error.user_message} ({error})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
