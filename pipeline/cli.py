"""`lilm pipeline`: run the pipeline's steps from one config (`--config`), or rebuild the
embedded tiny model (`--preset tiny`). Also the list of every pipeline command for `lilm`."""

from __future__ import annotations

import argparse

from core.settings import DEFAULT_MODEL_DIR


def step_registrars() -> list:
    """`register(subparsers)` of each pipeline step, in pipeline order (registering is light:
    mlx and friends load only when a step runs)."""
    from pipeline import dataset_cli, eval_cli, scrape_cli, train_cli

    return [scrape_cli.register, dataset_cli.register, train_cli.register, eval_cli.register]


def commands() -> list:
    """Every pipeline subcommand of `lilm`: the steps, `bases` and `pipeline` itself."""
    from pipeline import bases_cli

    return [bases_cli.register, *step_registrars(), register]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `pipeline` subcommand to a parent parser's subparsers."""
    parser = subparsers.add_parser(
        "pipeline",
        help="run scrape -> dataset -> train -> fuse -> quantize -> eval from one config, or rebuild the tiny model",
        description="With --config: run each step the YAML file has a section for, in order, with that section's "
        "options (see pipeline/configs/). Without: train the tiny Qwen2-style Cantonese model from HKCanCor.",
    )
    parser.add_argument("--config", default=None, help="YAML file with a section per step")
    parser.add_argument("--only", default=None, help="with --config: comma-separated steps to run, e.g. train,fuse")
    parser.add_argument("--set", action="append", default=[], metavar="STEP.OPTION=VALUE",
                        help="with --config: override one option, e.g. --set train.iters=200 (repeatable)")
    parser.add_argument("--preset", choices=("tiny", "quick"), default="tiny",
                        help="without --config: tiny = the shipped model (~20 min on 2 cores); quick = a smoke-test build (<1 min)")
    parser.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="tiny model output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data split, init and batches")
    parser.add_argument("--steps", type=int, default=None, help="tiny model training steps (default: the preset's)")
    # lilm/cli.py dispatches through `args.run(args, settings)`.
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, settings: object = None) -> int:
    """Run the configured steps, or build the tiny model; returns the exit code."""
    if args.config:
        return _run_config(args, settings)
    # Imported here: it pulls in mlx, which only this command needs.
    from pipeline.tiny_model import build_tiny_model

    result = build_tiny_model(args.out, preset=args.preset, seed=args.seed, steps=args.steps)
    print(
        f"built {result.out_dir}: {result.parameters / 1e6:.2f}M params, {result.disk_bytes / 1e6:.1f} MB, "
        f"{result.config.steps} steps in {result.seconds:.0f}s, held-out loss {result.final_held_out_loss:.3f} "
        f"(random init {result.random_init_held_out_loss:.3f})"
    )
    return 0


def _run_config(args: argparse.Namespace, settings) -> int:
    from pipeline.run_config import apply_overrides, load_config, run_pipeline

    config = apply_overrides(load_config(args.config), args.set)
    only = [step.strip() for step in args.only.split(",") if step.strip()] if args.only else None
    outcomes = run_pipeline(config, settings, registrars=step_registrars(), only=only)
    failed = next((o for o in outcomes if o.exit_code != 0), None)
    total = sum(o.seconds for o in outcomes)
    if failed is not None:
        print(f"pipeline stopped: {failed.step} exited {failed.exit_code} ({len(outcomes) - 1} step(s) done, {total:.0f}s)")
        return failed.exit_code
    print(f"pipeline done: {', '.join(o.step for o in outcomes) or 'no steps'} in {total:.0f}s")
    return 0
