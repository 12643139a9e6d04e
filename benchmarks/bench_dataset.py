"""Wall time and peak memory of `lilm dataset` on a synthetic scrape database of 1M posts.

Run: .venv/bin/python benchmarks/bench_dataset.py [--posts 1000000] [--repeat 3]

The database (threads of 1-40 pages, Cantonese HTML with emoji, most replies short of the
vote thresholds, some quoting, linking, by the author or vulgar; see
pipeline/dataset_synthetic.py) is generated once into a cache directory; its generation is
not part of the figure. Each build runs `python -m pipeline.dataset_cli` in a subprocess,
token counting with model/lilm-tiny's tokenizer included, and is measured from outside:
wall time, CPU time (user + sys) and peak RSS (getrusage of the children). CPU time is shown
because the wall time depends on what else the machine runs; the load average is printed.
The original LiLM builder took 46-52 s and 2.3 GB on 1M rows here, without token counting.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.settings import DEFAULT_MODEL_DIR, PROJECT_ROOT
from pipeline.dataset_synthetic import synthetic_scrape_db

GOAL_SECONDS = 10.0
GOAL_RSS_MB = 500.0
ORIGINAL = "original LiLM builder: 46-52 s, 2.3 GB (no token counting)"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lilm-bench"


def cached_database(cache_dir: Path, *, posts: int, seed: int) -> Path:
    """The synthetic database for these parameters, generated on first use."""
    path = cache_dir / f"scrape-{posts}-posts-seed{seed}-v1.sqlite3"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        print(f"generating {path} ({posts:,} posts)...", flush=True)
        synthetic_scrape_db(path, posts=posts, seed=seed)
        print(f"generated in {time.perf_counter() - started:.0f}s (not part of the figure)", flush=True)
    return path


def measure_build(db: Path, out_dir: Path, model: str) -> dict:
    """One `lilm dataset` run in a subprocess: wall and CPU seconds, and the build's stats."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.dataset_cli", "--db", str(db), "--out", str(out_dir), "--model", model],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"build failed ({completed.returncode}):\n{completed.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = json.loads((out_dir / "stats.json").read_text(encoding="utf-8"))
    return {"wall": wall, "cpu": cpu, "stats": stats, "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="builds to run (figures: each, and the best)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the synthetic database is kept")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="tokenizer for the token budget")
    args = parser.parse_args(argv)

    db = cached_database(args.cache, posts=args.posts, seed=args.seed)
    runs = []
    with tempfile.TemporaryDirectory(prefix="lilm-bench-dataset-") as tmp:
        for number in range(1, args.repeat + 1):
            run = measure_build(db, Path(tmp) / f"run{number}", args.model)
            runs.append(run)
            print(f"run {number}: wall {run['wall']:.2f}s, cpu {run['cpu']:.2f}s, load average {run['load']:.1f}", flush=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    stats = runs[-1]["stats"]
    best = min(runs, key=lambda run: run["wall"])
    print()
    print(f"database: {db} ({db.stat().st_size / 1e6:.0f} MB), {stats['threads']:,} threads, {stats['replies']:,} replies")
    print(f"rows kept: {stats['kept']:,} (train {stats['rows']['train']:,}, valid {stats['rows']['valid']:,}, "
          f"test {stats['rows']['test']:,}); dropped: " + ", ".join(f"{k} {v:,}" for k, v in stats["dropped"].items()))
    print(f"{'':<14}{'wall s':>10}{'cpu s':>10}{'peak RSS MB':>14}")
    print(f"{'best':<14}{best['wall']:>10.2f}{best['cpu']:>10.2f}{peak_rss_mb:>14.0f}")
    print(f"{'goal':<14}{GOAL_SECONDS:>10.2f}{'':>10}{GOAL_RSS_MB:>14.0f}")
    print(ORIGINAL)
    met = best["wall"] <= GOAL_SECONDS and peak_rss_mb <= GOAL_RSS_MB
    print("goal met" if met else "goal NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
