"""Throughput of core.masking.Masker against a naive `str.replace` loop, in one run.

Run: .venv/bin/python benchmarks/bench_masking.py [--mb 4] [--repeat 5]

The text is a few MB of LIHKG-style replies: Cantonese with punctuation, English, numbers,
emoji, some simplified characters, and a share of replies carrying listed words, a few of
them disguised (spaces, full-width, zero-width). MB means MB of UTF-8. The baseline replaces
each listed word in turn and does no folding, so it also misses every disguised word.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from core.masking import DEFAULT_WORDS_FILE, Masker, read_word_list

GOAL_MB_PER_S = 20.0
SEED = 20240601
VULGAR_SHARE = 0.25  # of replies that carry a listed word

CLEAN = [
    "今日啲天氣真係熱到溶",
    "巴打你講得啱",
    "我覺得呢個講法有啲問題",
    "樓主可唔可以講多啲細節？",
    "笑死我，真係有人咁諗",
    "呢間茶記個菠蘿油好好食",
    "佢哋下個禮拜先至會公佈結果",
    "唔好意思，我遲咗覆",
    "睇完都唔知佢想講乜",
    "返工返到好攰，想放假",
    "有冇人知道點樣申請？",
    "原來係咁，多謝晒",
    "我屋企附近開咗間新嘅拉麵舖",
    "今晚食乜好？",
    "呢套劇第二季好睇過第一季",
    "份人工追唔上樓價",
    "搭地鐵返工又遲到",
    "我都係咁話，但係冇人信",
    "去咗日本旅行返嚟",
    "佢個仔讀緊中三",
    "吊燈同埋檯燈邊隻好啲？",
    "冚家去飲茶",
    "斑鳩係一種雀",
    "撚手小菜要早啲訂位",
    "呢個post正",
    "good job 巴打",
    "iPhone 新出嗰部好貴",
    "check 下個 schedule 先",
    "ok 冇問題",
    "sorry 我唔清楚",
    "第7頭牛",
    "2024年嘅預算案",
    "lol",
    "[hkg:normal/clown]",
    "😂😂😂",
    "👍",
    "今天天气很好，我们去吃饭吧",
    "这个帖子很有意思",
]
VULGAR = [
    "冇撚用",
    "好撚煩",
    "屌你老母",
    "仆街啦你",
    "on9仔",
    "戇鳩",
    "食屎啦",
    "DLLM",
    "咩撚嘢呀",
    "柒頭",
    "冚家鏟",
    "收鳩皮啦",
    "躝屍趌路",
    "diu 佢",
    "what the fuck",
    "丢你老母",
    "戆鸠",
    "屌 你 老 母",  # disguised: spaces
    "Ｏｎ９",  # disguised: full-width
    "仆\u200b街",  # disguised: zero-width space
    "臭閪",
]
ENDINGS = ["", "。", "！", "？", "…", "，", " ", "!!", "～"]


def build_text(target_bytes: int, seed: int = SEED) -> str:
    """Replies joined by newlines until the UTF-8 size reaches `target_bytes`."""
    rng = random.Random(seed)
    replies, size = [], 0
    while size < target_bytes:
        sentences = [rng.choice(CLEAN) + rng.choice(ENDINGS) for _ in range(rng.randint(1, 3))]
        if rng.random() < VULGAR_SHARE:
            sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(VULGAR) + rng.choice(ENDINGS))
        reply = "".join(sentences)
        replies.append(reply)
        size += len(reply.encode()) + 1
    return "\n".join(replies)


def naive_mask(words: list[str]) -> Callable[[str], str]:
    """The baseline: one `str.replace` per listed word, no folding, no separators."""

    def mask(text: str) -> str:
        for word in words:
            text = text.replace(word, "X" * len(word))
        return text

    return mask


def throughput(mask: Callable[[str], str], texts: list[str], repeat: int) -> float:
    """Best MB/s over `repeat` runs of `mask` over every text."""
    size = sum(len(text.encode()) for text in texts) / 1e6
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for text in texts:
            mask(text)
        best = min(best, time.perf_counter() - started)
    return size / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="size of the generated text in MB")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best counts")
    args = parser.parse_args()

    words = read_word_list(DEFAULT_WORDS_FILE).blocked
    started = time.perf_counter()
    masker = Masker.default()  # the first build also builds the process-wide folding table
    build_seconds = time.perf_counter() - started
    text = build_text(int(args.mb * 1e6))
    replies = text.split("\n")
    naive = naive_mask(words)

    patterns = len(Masker(words))
    print(f"text: {len(text.encode()) / 1e6:.2f} MB, {len(text):,} characters, {len(replies):,} replies")
    print(f"Masker: {patterns} distinct patterns from {len(words)} listed words, built in {build_seconds:.2f} s")
    print(f"matches: {len(masker.find(text)):,}; still there after the naive loop: {len(masker.find(naive(text))):,}")
    rows = [
        ("Masker, whole text", throughput(masker.mask, [text], args.repeat)),
        ("naive replace loop, whole text", throughput(naive, [text], args.repeat)),
        ("Masker, reply by reply", throughput(masker.mask, replies, args.repeat)),
        ("naive replace loop, reply by reply", throughput(naive, replies, args.repeat)),
    ]
    for name, mb_per_s in rows:
        print(f"{name:<36} {mb_per_s:8.1f} MB/s")
    whole, by_reply = rows[0][1] / rows[1][1], rows[2][1] / rows[3][1]
    print(f"ratio Masker / naive: whole text {whole:.1f}x, reply by reply {by_reply:.1f}x")
    verdict = "meets" if rows[0][1] >= GOAL_MB_PER_S else "MISSES"
    print(f"goal {GOAL_MB_PER_S:.0f} MB/s (whole text): {verdict}")


if __name__ == "__main__":
    main()
