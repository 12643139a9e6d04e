"""The core subcommands of `lilm`: reply, demo, chat, mask."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from core.demo import demo_threads
from core.errors import LilmError
from core.lihkg import LihkgClient
from core.links import find_links, parse_link
from core.masking import Masker
from core.reply import ReplyResult, ReplyService, ThreadPrompt, prompt_from_thread
from core.runtime import open_reply_service
from core.settings import Settings

CHAT_PROMPT = "連結或者帖文> "
CHAT_CATEGORY = "吹水台"


async def reply(args: argparse.Namespace, settings: Settings) -> int:
    # Link and LIHKG problems surface before the (possibly large) model is loaded.
    link = parse_link(args.message)
    async with LihkgClient.from_settings(settings) as fetcher:
        thread = await fetcher.fetch_thread(link.thread_id)
    async with open_reply_service(settings, with_fetcher=False) as service:
        result = await service.reply_to_prompt(prompt_from_thread(thread), n=args.n, seed=args.seed)
    if args.json:
        print(json.dumps(result.to_json_dict(), ensure_ascii=False))
    else:
        print(format_result(result))
    return 0


async def demo(args: argparse.Namespace, settings: Settings) -> int:
    async with open_reply_service(settings, with_fetcher=False) as service:
        print(f"模型：{service.backend.name}\n")
        for index, prompt in enumerate(demo_threads()):
            seed = None if args.seed is None else args.seed + 100 * index
            result = await service.reply_to_prompt(prompt, n=args.n, seed=seed)
            print(format_result(result), end="\n\n")
    return 0


async def chat(args: argparse.Namespace, settings: Settings) -> int:
    """Read lines until EOF: a line with a LIHKG link replies to that thread, any other
    text is taken as the content of a 吹水台 post (its first line as title)."""
    async with open_reply_service(settings) as service:
        print("貼 LIHKG 連結，或者打個帖文；Ctrl-D 離開。")
        while (line := await asyncio.to_thread(_read_line, CHAT_PROMPT)) is not None:
            if not line.strip():
                continue
            try:
                result = await _chat_turn(service, line, args)
            except LilmError as error:
                print(error.user_message)
                continue
            print(format_result(result), end="\n\n")
    return 0


async def _chat_turn(service: ReplyService, line: str, args: argparse.Namespace) -> ReplyResult:
    if find_links(line):
        return await service.reply_to_message(line, n=args.n, seed=args.seed)
    title = line.strip()[:40]
    return await service.reply_to_prompt(ThreadPrompt(category=CHAT_CATEGORY, title=title, content=line.strip()), n=args.n, seed=args.seed)


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


def mask(args: argparse.Namespace, settings: Settings) -> int:
    masker = Masker.default(extra_words=settings.sensitive_words_extra, extra_file=settings.sensitive_words_file or None)
    for line in sys.stdin:
        sys.stdout.write(masker.mask(line))
    return 0


def format_result(result: ReplyResult) -> str:
    """Human-readable block: thread header, then each reply."""
    thread = result.thread
    header = f"【{thread.category}】{thread.title}"
    if thread.thread_id is not None:
        header += f"  https://lihkg.com/thread/{thread.thread_id}/page/1"
    lines = [header, thread.content, "—" * 10]
    numbered = len(result.replies) > 1
    for index, text in enumerate(result.replies, start=1):
        lines.append(f"{index}. {text}" if numbered else text)
    return "\n".join(lines)
