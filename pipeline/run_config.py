"""`lilm pipeline --config FILE`: every step of the pipeline from one YAML file, in order.

Each top-level section names a step and holds that step's command-line options: `out: data/x`
is `--out data/x`, `true` a bare flag, `false` or null leaves the option out, a list repeats it,
and `args` holds positional arguments (`quantize: {args: [model/lihkg]}`).
So a config means exactly what the same options typed after `lilm <step>` mean, a step's
defaults are its command's, and options given on the command line win over the file
(`--set train.iters=200`). Sections run in pipeline order; a step without a section is skipped.

    scrape:   {category: "1,5", latest: true, db: runs/lihkg.sqlite3}
    dataset:  {db: runs/lihkg.sqlite3, out: runs/data, model: /models/qwen}
    train:    {model: /models/qwen, data: runs/data, adapter-path: adapters/lihkg}
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

STEP_ORDER = ("scrape", "dataset", "train", "fuse", "quantize", "eval")

Registrar = Callable[[argparse._SubParsersAction], object]


@dataclass(frozen=True)
class StepOutcome:
    step: str
    argv: list[str]
    exit_code: int
    seconds: float


def load_config(path: str | Path) -> dict[str, dict]:
    """The config's step sections, checked: known step names, each a mapping of options."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"pipeline config not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of steps ({', '.join(STEP_ORDER)}), found {type(data).__name__}")
    unknown = sorted(set(data) - set(STEP_ORDER))
    if unknown:
        raise ConfigError(f"{path}: unknown step(s) {', '.join(map(str, unknown))}; steps are {', '.join(STEP_ORDER)}")
    for step, options in data.items():
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"{path}: section {step!r} must map option names to values, found {type(options).__name__}")
    return {step: dict(data[step] or {}) for step in STEP_ORDER if step in data}


def apply_overrides(config: dict[str, dict], overrides: Iterable[str]) -> dict[str, dict]:
    """`step.option=value` strings (from `--set`) on top of the file's values.

    >>> apply_overrides({"train": {"iters": 100}}, ["train.iters=5", "eval.limit=2"])
    {'train': {'iters': '5'}, 'eval': {'limit': '2'}}
    """
    merged = {step: dict(options) for step, options in config.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        step, dot, option = key.partition(".")
        if not sep or not dot or not option:
            raise ConfigError(f"--set expects step.option=value, got {item!r}")
        if step not in STEP_ORDER:
            raise ConfigError(f"--set {item!r}: unknown step {step!r}; steps are {', '.join(STEP_ORDER)}")
        merged.setdefault(step, {})[option] = value
    return {step: merged[step] for step in STEP_ORDER if step in merged}


def step_argv(step: str, options: dict) -> list[str]:
    """The command line a section stands for.

    >>> step_argv("dataset", {"out": "runs/data", "keep_quotes": True, "keep_links": False, "seed": 3})
    ['dataset', '--out', 'runs/data', '--keep-quotes', '--seed', '3']
    >>> step_argv("quantize", {"args": "model/lihkg", "bits": 8})
    ['quantize', 'model/lihkg', '--bits', '8']
    """
    positional = options.get("args", [])
    argv = [step, *map(str, positional if isinstance(positional, list) else [positional])]
    for name, value in options.items():
        if name == "args":
            continue
        flag = "--" + str(name).replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def parse_steps(
    config: dict[str, dict], *, registrars: Sequence[Registrar], only: Sequence[str] | None = None
) -> list[tuple[str, list[str], argparse.Namespace]]:
    """(step, argv, parsed options) of each step to run, in order; ConfigError on any bad option."""
    parser = argparse.ArgumentParser(prog="lilm", exit_on_error=False)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in registrars:
        register(subparsers)
    if only and (missing := sorted(set(only) - set(config))):
        raise ConfigError(f"--only names step(s) the config has no section for: {', '.join(missing)}")
    chosen = [step for step in STEP_ORDER if step in config and (not only or step in only)]
    return [(step, argv, _parse(parser, argv)) for step in chosen for argv in [step_argv(step, config[step])]]


def run_pipeline(
    config: dict[str, dict],
    settings,
    *,
    registrars: Sequence[Registrar],
    only: Sequence[str] | None = None,
    echo: Callable[[str], None] = print,
) -> list[StepOutcome]:
    """Run the configured steps in order through their own commands; stop at the first that fails.
    Every section is checked before the first step starts."""
    outcomes = []
    for step, argv, args in parse_steps(config, registrars=registrars, only=only):
        echo(f"== {' '.join(['lilm', *argv])}")
        started = time.perf_counter()
        result = args.run(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        outcome = StepOutcome(step, argv, int(result or 0), time.perf_counter() - started)
        outcomes.append(outcome)
        echo(f"== {step}: exit {outcome.exit_code} after {outcome.seconds:.1f}s")
        if outcome.exit_code != 0:
            break
    return outcomes


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as error:
        raise ConfigError(f"pipeline config section {argv[0]!r}: {error} (in: lilm {' '.join(argv)})") from None
