"""`lilm dataset`: the command line of the dataset builder (also `python -m pipeline.dataset_cli`).

    lilm dataset --db lihkg.sqlite3 --out data/lihkg --model model/lilm-tiny --seed 0

Writes train/valid/test.jsonl and stats.json into --out and prints the drop table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import ConfigError
from core.settings import DEFAULT_MODEL_DIR, Settings, load_settings
from pipeline.dataset_filters import DatasetCriteria

DEFAULT_OUT_DIR = "data/lihkg"
SCRAPE_DB_FILE_NAME = "lihkg.sqlite3"  # as `lilm scrape` names it in the state directory


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `dataset` subcommand to a parent parser's subparsers."""
    parser = subparsers.add_parser(
        "dataset",
        help="build mlx-lm training data (train/valid/test.jsonl) from the scrape database",
        description="Turn scraped LIHKG threads into mlx-lm chat JSONL: replies that pass the dataset criteria, "
        "split 80/10/10 by thread, with stats.json saying what each criterion dropped.",
    )
    add_options(parser)
    parser.set_defaults(run=run)
    return parser


def add_options(parser: argparse.ArgumentParser) -> None:
    defaults = DatasetCriteria()
    io = parser.add_argument_group("input and output")
    io.add_argument("--db", default=None, help="scrape database (default LILM_SCRAPE_DB, else <state dir>/lihkg.sqlite3)")
    io.add_argument("--out", default=DEFAULT_OUT_DIR, help="output directory (default: %(default)s)")
    io.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                    help="local model directory whose tokenizer.json and chat template measure the token budget "
                    "(default: %(default)s)")
    io.add_argument("--format", dest="output_format", choices=("chat", "completions"), default="chat",
                    help='chat: {"messages": [...]} (default); completions: {"prompt", "completion"}')
    split = parser.add_argument_group("split")
    split.add_argument("--seed", type=int, default=0, help="split seed: same seed, same split (default: %(default)s)")
    split.add_argument("--split", type=_ratios, default=(0.8, 0.1, 0.1), metavar="TRAIN,VALID,TEST",
                       help="shares of threads (default: 0.8,0.1,0.1)")
    rules = parser.add_argument_group("criteria")
    rules.add_argument("--min-votes", type=int, default=defaults.min_votes, help="likes + dislikes at least (default: %(default)s)")
    rules.add_argument("--positive-ratio", type=float, default=defaults.positive_ratio,
                       help="likes >= RATIO x (dislikes + 1) (default: %(default)s)")
    rules.add_argument("--max-tokens", type=int, default=defaults.max_tokens,
                       help="whole chat (system + user + reply, chat template included) at most (default: %(default)s)")
    rules.add_argument("--keep-first-reply-by-author", action="store_true",
                       help="keep threads whose first reply is by the author")
    rules.add_argument("--keep-author-replies", action="store_true", help="keep replies by the thread author")
    rules.add_argument("--keep-quotes", action="store_true", help="keep replies that quote another post")
    rules.add_argument("--keep-links", action="store_true", help="keep replies with links, images or videos")
    rules.add_argument("--keep-sensitive", action="store_true", help="keep replies with sensitive words")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the dataset; print where it went and the drop table. Returns 0."""
    # Imported here: the builder pulls in the tokenizer and the masker, which only this command needs.
    from core.masking import Masker
    from pipeline.dataset import build_dataset

    try:
        criteria, options = _options(args)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    masker = None
    if criteria.drop_sensitive:
        masker = Masker.default(extra_words=settings.sensitive_words_extra, extra_file=settings.sensitive_words_file or None)
    db_path = Path(args.db or settings.scrape_db or Path(settings.state_dir) / SCRAPE_DB_FILE_NAME)
    result = build_dataset(db_path, args.out, model_dir=args.model, masker=masker, options=options)
    print(f"dataset from {db_path} written to {result.out_dir} (stats in {result.out_dir / 'stats.json'})")
    print(result.stats.table())
    return 0


def _options(args: argparse.Namespace):  # -> tuple[DatasetCriteria, DatasetOptions]
    from pipeline.dataset import DatasetOptions
    from pipeline.dataset_split import SplitRatios

    criteria = DatasetCriteria(
        min_votes=args.min_votes,
        positive_ratio=args.positive_ratio,
        first_reply_not_by_author=not args.keep_first_reply_by_author,
        drop_author_replies=not args.keep_author_replies,
        drop_quotes=not args.keep_quotes,
        drop_links=not args.keep_links,
        drop_sensitive=not args.keep_sensitive,
        max_tokens=args.max_tokens,
    )
    options = DatasetOptions(criteria=criteria, ratios=SplitRatios(*args.split), seed=args.seed, output_format=args.output_format)
    return criteria, options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lilm dataset", description="Build mlx-lm training data from the scrape database.")
    add_options(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, load_settings())
    except ConfigError as error:
        print(f"{error.user_message} ({error})", file=sys.stderr)
        return 1


def _ratios(text: str) -> tuple[float, float, float]:
    """`0.8,0.1,0.1` -> (0.8, 0.1, 0.1)."""
    try:
        parts = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"expected three shares >= 0 adding up to 1, got {text!r}")
    return parts


if __name__ == "__main__":
    sys.exit(main())
