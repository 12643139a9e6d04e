"""`lilm pipeline`: rebuild the embedded tiny model (`--preset tiny`) from HKCanCor."""

from __future__ import annotations

import argparse

from core.settings import DEFAULT_MODEL_DIR


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `pipeline` subcommand to a parent parser's subparsers."""
    parser = subparsers.add_parser(
        "pipeline",
        help="train the embedded tiny model from scratch",
        description="Train the tiny Qwen2-style Cantonese model from HKCanCor and save it.",
    )
    parser.add_argument("--preset", choices=("tiny", "quick"), default="tiny",
                        help="tiny: the shipped model (~10 min); quick: a smoke-test build (<1 min)")
    parser.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data split, init and batches")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    # lilm/cli.py dispatches through `args.run(args, settings)`.
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, settings: object = None) -> int:
    """Build the model as the parsed options say; print a one-line summary. Returns 0.

    `settings` is accepted for the `lilm` dispatcher and unused: the build has no tunables there.
    """
    # Imported here: it pulls in mlx, which only this command needs.
    from pipeline.tiny_model import build_tiny_model

    result = build_tiny_model(args.out, preset=args.preset, seed=args.seed, steps=args.steps)
    print(
        f"built {result.out_dir}: {result.parameters / 1e6:.2f}M params, {result.disk_bytes / 1e6:.1f} MB, "
        f"{result.config.steps} steps in {result.seconds:.0f}s, held-out loss {result.final_held_out_loss:.3f} "
        f"(random init {result.random_init_held_out_loss:.3f})"
    )
    return 0
