"""`lilm scrape` as a command: argument parsing, settings, and kill -9 crash safety."""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import load_settings
from pipeline import scrape_cli
from tests.fakes.lihkg_server import FakeLihkgServer, Scenario
from tests.fakes.lihkg_threads import make_corpus

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lilm")
    scrape_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["scrape", *argv])


def table_contents(db: Path) -> dict[str, list[tuple]]:
    """Every row of the scraper's tables, minus the fetch timestamps that differ between runs."""
    with sqlite3.connect(db) as connection:
        return {
            "threads": [row[:-1] for row in connection.execute("SELECT * FROM threads ORDER BY thread_id")],
            "posts": connection.execute("SELECT * FROM posts ORDER BY post_id").fetchall(),
            "gone": connection.execute("SELECT thread_id FROM scrape_gone ORDER BY thread_id").fetchall(),
        }


def test_options_parse_and_the_database_defaults_to_the_state_dir(tmp_path):
    args = parse(["--category", "1,5", "--category", "7", "--ids", "10-20", "--hot", "--rpm", "12"])
    assert (args.categories, args.ids, args.hot, args.latest, args.rpm) == ([1, 5, 7], (10, 20), True, False, 12.0)
    assert args.run is scrape_cli.run
    settings = load_settings(env_file=None, environ={"LILM_STATE_DIR": str(tmp_path)})
    assert scrape_cli.scrape_db_path(settings) == tmp_path / "lihkg.sqlite3"
    assert scrape_cli.scrape_db_path(settings, "x.db") == Path("x.db")
    with pytest.raises(SystemExit):
        parse(["--ids", "20-10"])


@pytest.mark.timeout(60)
async def test_the_command_scrapes_into_the_configured_database_and_says_so(lihkg_server, tmp_path, capsys):
    for thread in make_corpus(5, first_id=100, cat_ids=(5,), seed=3):
        lihkg_server.add_thread(thread)
    settings = load_settings(env_file=None, environ={
        "LIHKG_BASE_URL": lihkg_server.base_url, "LILM_STATE_DIR": str(tmp_path), "LIHKG_REQUESTS_PER_MINUTE": "6000",
    })
    args = parse(["--category", "5", "--ids", "100-105"])
    assert await args.run(args, settings) == 0
    out = capsys.readouterr().out
    assert "saved 5 threads" in out and "1 gone" in out and "0 failed" in out
    contents = table_contents(tmp_path / "lihkg.sqlite3")
    assert [row[0] for row in contents["threads"]] == [100, 101, 102, 103, 104] and contents["gone"] == [(105,)]
    headers = lihkg_server.requests[0].headers
    assert len(headers["x-li-device"]) == 40 and headers["x-li-device-type"] == "browser"

    with pytest.raises(ConfigError, match="nothing to scrape"):
        await scrape_cli.run(parse([]), settings)


@pytest.mark.timeout(60)
def test_main_exits_1_with_one_line_when_every_ip_is_banned_and_3_when_threads_failed(
        lihkg_server, tmp_path, monkeypatch, capsys):
    lihkg_server.add_thread(make_corpus(1, first_id=50, cat_ids=(1,))[0])
    monkeypatch.setenv("LIHKG_BASE_URL", lihkg_server.base_url)
    monkeypatch.setenv("LILM_STATE_DIR", str(tmp_path))
    argv = ["--env-file", os.devnull, "--ids", "50", "--rpm", "6000", "--max-attempts", "1"]

    lihkg_server.set_scenario(Scenario.forbidden())
    assert scrape_cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lilm scrape: LIHKG 封咗我哋") and "every IP is banned" in err[-1]

    lihkg_server.set_scenario(Scenario.server_error(times=None))
    assert scrape_cli.main(argv) == 3
    assert "1 failed" in capsys.readouterr().out

    lihkg_server.clear_scenarios()
    assert scrape_cli.main(argv) == 0
    assert "saved 1 threads" in capsys.readouterr().out


# ------------------------------------------------------------------ kill -9 at random moments


def start_scraper(server: FakeLihkgServer, db: Path, state: Path) -> subprocess.Popen:
    env = {**os.environ, "LIHKG_BASE_URL": server.base_url, "LILM_STATE_DIR": str(state), "PYTHONPATH": str(PROJECT_ROOT)}
    argv = [sys.executable, "-m", "pipeline.scrape_cli", "--env-file", os.devnull, "--category", "5", "--latest",
            "--ids", "3000-3045", "--db", str(db), "--rpm", "1500", "--concurrency", "6", "--no-progress"]
    return subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def page_requests(server: FakeLihkgServer) -> int:
    return sum(1 for r in server.requests if "/page/" in r.path)


def assert_only_whole_threads(db: Path) -> set[int]:
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        threads = dict(connection.execute("SELECT thread_id, no_of_reply FROM threads"))
        for thread_id, replies in threads.items():
            numbers = [n for (n,) in connection.execute(
                "SELECT msg_num FROM posts WHERE thread_id = ? ORDER BY msg_num", (thread_id,))]
            assert numbers == list(range(1, replies + 1)), f"thread {thread_id} stored in part"
    return set(threads)


@pytest.mark.timeout(120)
def test_kill_9_five_times_then_finish_equals_an_uninterrupted_run(tmp_path):
    rng = random.Random(7)
    with FakeLihkgServer() as server:
        corpus = make_corpus(40, first_id=3000, cat_ids=(5, 6), seed=5)
        for thread in corpus:
            server.add_thread(thread)
        server.set_scenario(Scenario.slow(0.005))  # a little latency, as across the internet
        total_pages = sum(t.total_page for t in corpus)

        reference = tmp_path / "uninterrupted.sqlite3"
        done = start_scraper(server, reference, tmp_path)
        assert done.wait(timeout=60) == 0, done.stderr.read().decode()

        db = tmp_path / "killed.sqlite3"
        kept: set[int] = set()
        for _ in range(5):
            server.requests.clear()
            victim = start_scraper(server, db, tmp_path)
            # A random moment while it is fetching: after a random number of page requests,
            # plus a random sliver of time so some kills land mid-commit.
            remaining = total_pages - sum(t.total_page for t in corpus if t.thread_id in kept)
            threshold = rng.randint(1, max(1, remaining * 2 // 3))
            deadline = time.monotonic() + 30
            while page_requests(server) < threshold and victim.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
            assert victim.poll() is None, "the scraper finished before it could be killed"
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(timeout=10) == -signal.SIGKILL
            now_kept = assert_only_whole_threads(db)
            assert kept <= now_kept  # nothing already stored was lost
            kept = now_kept
        assert 0 < len(kept) < len(corpus)

        server.requests.clear()
        finish = start_scraper(server, db, tmp_path)
        assert finish.wait(timeout=60) == 0, finish.stderr.read().decode()
        assert page_requests(server) < total_pages  # it resumed instead of starting over

    assert table_contents(db) == table_contents(reference)
    assert len(table_contents(db)["threads"]) == 40
