"""`lilm eval`: compare a fine-tuned model with its base on a dataset's test split."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from core.errors import ConfigError

DEFAULT_OUT_ROOT = "eval"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `eval` subcommand to a parent parser's subparsers."""
    from pipeline.eval_report import FORMATS
    from pipeline.evaluate import DEFAULT_LIMIT, DEFAULT_MAX_TOKENS

    parser = subparsers.add_parser(
        "eval",
        help="compare a fine-tuned model with its base on a test split",
        description=(
            "Perplexity on the test split's replies, Cantonese and simplified-character shares and lengths of "
            "generated replies, and a side-by-side table, for a base and a fine-tuned model. The fine-tuned "
            "model defaults to what the bots serve (LILM_MODEL + LILM_ADAPTER)."
        ),
    )
    parser.add_argument("--data", required=True, help="dataset directory with test.jsonl (or a .jsonl file)")
    parser.add_argument("--base", required=True, help="base model: MLX model directory or Hugging Face repo id")
    parser.add_argument("--model", default=None, help="fine-tuned model (fused), or the model --adapter applies to "
                        "(default: --base when --adapter is given; with neither: LILM_MODEL + LILM_ADAPTER)")
    parser.add_argument("--adapter", default=None, help="LoRA adapter directory of the fine-tuned model")
    parser.add_argument("--train-log", default=None, help="train_log.jsonl for the loss curve (default: the adapter's)")
    parser.add_argument("--out", default=None, help=f"report directory (default: {DEFAULT_OUT_ROOT}/<fine-tuned name>)")
    parser.add_argument("--format", choices=FORMATS, default="md", help="report format (default: %(default)s)")
    parser.add_argument("--limit", type=_positive, default=DEFAULT_LIMIT, help="test threads to generate replies for (default: %(default)s)")
    parser.add_argument("--max-tokens", type=_positive, default=DEFAULT_MAX_TOKENS, help="tokens per generated reply (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed; thread i uses seed + i (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=None, help="default: LILM_TEMPERATURE")
    parser.add_argument("--perplexity-rows", type=_positive, default=None, help="test rows scored for perplexity (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a summary")
    parser.set_defaults(run=run)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace, settings) -> int:
    """Evaluate, write the report; print a summary (or the JSON). Returns 0."""
    from pipeline.eval_report import write_report
    from pipeline.evaluate import EvalOptions, ModelSpec, evaluate

    if args.model or args.adapter:
        finetuned = ModelSpec(args.model or args.base, adapter=args.adapter)
    else:  # what the bots serve
        finetuned = ModelSpec(settings.model, adapter=settings.adapter or None)
    base = ModelSpec(args.base)
    if _same_model(finetuned, base):
        raise ConfigError(f"the fine-tuned model is the base model ({base.label}): give --model or --adapter")
    options = EvalOptions(
        limit=args.limit, max_tokens=args.max_tokens, seed=args.seed, temperature=args.temperature,
        perplexity_rows=args.perplexity_rows,
    )
    result = evaluate(base=base, finetuned=finetuned, data=args.data, settings=settings, options=options, train_log=args.train_log)
    out = Path(args.out) if args.out else Path(DEFAULT_OUT_ROOT) / _slug(finetuned.label)
    files = write_report(result, out, fmt=args.format)
    if args.json:
        print(files.results.read_text(encoding="utf-8"), end="")
        return 0
    for m in (result.base, result.finetuned):
        print(
            f"{m.role:>9} {m.spec.label}: perplexity {m.perplexity.perplexity:.2f} "
            f"({m.perplexity.tokens} tokens), Cantonese {m.judgement.share_cantonese:.0%}, "
            f"simplified {m.unconverted_judgement.mean_simplified_share:.1%} as generated, "
            f"mean length {m.lengths.mean:.1f} chars"
        )
    print(f"     real: Cantonese {result.real_judgement.share_cantonese:.0%}, mean length {result.real_lengths.mean:.1f} chars")
    print(f"report {files.report} ({result.seconds:.1f}s)")
    return 0


def _same_model(a, b) -> bool:
    def where(model: str) -> str:
        path = Path(model).expanduser()
        return str(path.resolve()) if path.exists() else model

    return a.adapter == b.adapter and where(a.model) == where(b.model)


def _slug(text: str) -> str:
    """
    >>> _slug("Qwen1.5-32B + my run/2")
    'Qwen1.5-32B-my-run-2'
    """
    return re.sub(r"[^\w.]+", "-", text).strip("-") or "model"
