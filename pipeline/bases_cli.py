"""`lilm bases MODEL [MODEL ...]`: compare candidate base models on Cantonese.

Also runnable on its own: `python -m pipeline.bases_cli model/lilm-tiny --random-baseline`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from core.errors import ConfigError, LilmError

DEFAULT_REPORTS = ("bases-report.md", "bases-report.html")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `bases` subcommand to a parent parser's subparsers."""
    parser = subparsers.add_parser(
        "bases",
        help="compare candidate base models on Cantonese",
        description="Compare local MLX models (DIR or DIR@ADAPTER_DIR) on Cantonese perplexity, "
        "sampled continuations, Hong Kong knowledge and algebra probes, size and speed.",
    )
    add_options(parser)
    # lilm/cli.py dispatches through `args.run(args, settings)`.
    parser.set_defaults(run=run)
    return parser


def add_options(parser: argparse.ArgumentParser) -> None:
    from pipeline.bases import FULL_CORPUS, HELD_OUT_CORPUS, BasesOptions

    defaults = BasesOptions()
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="local MLX model directory, or DIR@ADAPTER_DIR for a base plus LoRA adapter")
    parser.add_argument("--random-baseline", action="store_true",
                        help="also score a random-initialised copy of the first model (same shape and tokenizer)")
    parser.add_argument("--corpus", default=HELD_OUT_CORPUS,
                        help=f"{HELD_OUT_CORPUS} (default: HKCanCor conversations the embedded model never "
                        f"trained on), {FULL_CORPUS}, or a UTF-8 text file")
    parser.add_argument("--max-chars", type=int, default=defaults.max_chars,
                        help="score at most this many corpus characters, 0 for all (default: %(default)s)")
    parser.add_argument("--window", type=_positive, default=defaults.window,
                        help="perplexity window in tokens, cut to the model's context (default: %(default)s)")
    parser.add_argument("--stride", type=_positive, default=defaults.stride,
                        help="tokens the window moves each step (default: %(default)s)")
    parser.add_argument("--probes", default=None, metavar="FILE",
                        help="probe questions and continuation prompts (default: pipeline/data/base_probes.json)")
    parser.add_argument("--samples", type=_positive, default=defaults.continuation_samples,
                        help="sampled continuations per prompt (default: %(default)s)")
    parser.add_argument("--max-tokens", type=_positive, default=defaults.continuation_tokens,
                        help="tokens per continuation (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--report", action="append", default=None, metavar="FILE",
                        help="write the report here (.md or .html; repeatable; default: "
                        + " and ".join(DEFAULT_REPORTS) + ")")
    parser.add_argument("--no-report", action="store_true", help="write no report file")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def options_from_args(args: argparse.Namespace):
    from pipeline.bases import BasesOptions

    if args.window < 2:
        raise ConfigError(f"--window must be at least 2 tokens, got {args.window}")
    return BasesOptions(
        window=args.window, stride=args.stride, max_chars=args.max_chars, continuation_samples=args.samples,
        continuation_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
    )


def run(args: argparse.Namespace, settings: object = None) -> int:
    """Compare the models; print tables (or JSON) and write the report files. Returns 0."""
    from pipeline.bases import compare_bases, load_corpus, progress_units
    from pipeline.bases_models import CandidateSpec, random_init_like
    from pipeline.bases_probes import load_probes
    from pipeline.bases_report import to_html, to_json, to_markdown, to_terminal

    _quiet_transformers()
    began = time.perf_counter()
    writers = {".md": to_markdown, ".html": to_html, ".htm": to_html}
    reports = [] if args.no_report else [Path(name) for name in args.report or DEFAULT_REPORTS]
    for path in reports:  # refuse bad names before the long part
        if path.suffix.lower() not in writers:
            raise ConfigError(f"report {path}: expected a .md or .html file name")
    options = options_from_args(args)
    specs = [CandidateSpec.parse(m) for m in args.models]
    probe_set = load_probes(args.probes)
    corpus = load_corpus(args.corpus, max_chars=options.max_chars)
    with tempfile.TemporaryDirectory(prefix="lilm-bases-") as scratch:
        if args.random_baseline:
            first = specs[0]
            try:
                baseline = random_init_like(first.model_path, Path(scratch) / "random-init", seed=options.seed)
            except (OSError, ValueError) as error:
                raise ConfigError(f"cannot build a random-initialised copy of {first.model_path}: {error}") from error
            specs.append(CandidateSpec(model_path=str(baseline), label=f"{first.label} (random init)"))
        with _ProgressBar(len(specs) * progress_units(corpus, probe_set), enabled=not args.no_progress) as step:
            report = compare_bases(specs, corpus=corpus, probe_set=probe_set, options=options, progress=step)
    report.seconds = time.perf_counter() - began  # the whole run, corpus loading included
    print(to_json(report) if args.json else to_terminal(report))
    for path in reports:
        path.write_text(writers[path.suffix.lower()](report), encoding="utf-8")
        print(f"report written to {path}", file=sys.stderr)
    failed = [result.label for result in report.candidates if result.error]
    if failed:  # the others are still compared above; the exit code tells scripts
        print(f"lilm: could not evaluate {', '.join(failed)} (see the table)", file=sys.stderr)
        return 1
    return 0


class _ProgressBar:
    """tqdm on stderr advancing one step per reported stage (a no-op when disabled)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total, self.enabled, self.bar = total, enabled, None

    def __enter__(self):
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="step", file=sys.stderr, dynamic_ncols=True)
        return self.step

    def step(self, stage: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(stage, refresh=False)
            self.bar.update(1)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _quiet_transformers() -> None:
    """Corpus documents are longer than tokenizers' model_max_length: the warning is noise here."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.bases_cli ...`: the same as `lilm bases ...`."""
    from core.blas import preload_openblas

    parser = argparse.ArgumentParser(prog="lilm bases", description=__doc__.splitlines()[0])
    add_options(parser)
    args = parser.parse_args(argv)
    preload_openblas("auto")  # before anything imports mlx
    try:
        return run(args)
    except LilmError as error:
        print(f"lilm: {error.user_message} ({error})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
