"""Seeded LIHKG-like threads cut from HKCanCor conversations.

A thread is a window of one conversation: a short utterance becomes the title, the next few
utterances the first post, and the following turn (preferably another speaker's) the reply
the model learns to write. The category comes from topic words in the window, otherwise a
seeded pick among general boards. Held-out threads come from held-out conversations only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.hkcancor import Conversation, Utterance

# Boards whose topic words show up in everyday HKCanCor talk (names from the LIHKG API).
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "飲食台": ("餐廳", "飲茶", "食飯", "晏晝", "好食", "煮"),
    "旅遊台": ("旅行", "機票", "酒店", "日本", "去玩"),
    "遊戲台": ("遊戲", "打機", "PS", "Saturn"),
    "硬件台": ("電腦", "byte", "ram", "disk"),
    "上班台": ("返工", "老細", "公司", "人工", "放工", "同事"),
    "感情台": ("拍拖", "男朋友", "女朋友", "結婚", "老公", "老婆"),
    "財經台": ("股票", "投資", "銀行", "儲錢", "Bank"),
    "校園台": ("學校", "考試", "功課", "大學", "讀書", "老師"),
    "時事台": ("政府", "新聞", "中國", "九七", "選舉"),
    "影視台": ("電影", "睇戲", "電視", "TVB"),
    "音樂台": ("唱歌", "音樂", "CD"),
    "體育台": ("足球", "踢波", "運動"),
    "健康台": ("醫生", "病", "醫院"),
    "寵物台": ("狗", "貓"),
    "潮流台": ("衫", "買嘢", "頭髮"),
    "World": ("美國", "英國", "外國", "移民"),
}
# Fallback boards when no topic word matches; 吹水台 (chit-chat) dominates as on LIHKG.
GENERAL_BOARDS: tuple[tuple[str, int], ...] = (("吹水台", 6), ("創意台", 1), ("講故台", 1), ("黑洞", 1))
CATEGORIES: tuple[str, ...] = tuple(TOPIC_WORDS) + tuple(name for name, _ in GENERAL_BOARDS)

TITLE_CHARS = (4, 30)
TITLE_TRAILING = "。，"


@dataclass(frozen=True)
class SyntheticThread:
    """One training example: the prompt fields plus the reply to learn."""

    id: str
    conversation: str
    category: str
    title: str
    content: str
    reply: str


@dataclass(frozen=True)
class ThreadSplit:
    """Threads split by conversation: no held-out thread shares a conversation with training."""

    train: list[SyntheticThread]
    held_out: list[SyntheticThread]
    train_conversations: list[Conversation]
    held_out_conversations: list[Conversation]


def pick_category(text: str, rng: random.Random) -> str:
    """The board whose topic words occur most in `text`, else a seeded general board.

    >>> pick_category("我哋聽日去旅行，機票好平", random.Random(0))
    '旅遊台'
    """
    scores = {board: sum(text.count(w) for w in words) for board, words in TOPIC_WORDS.items()}
    best = max(scores, key=lambda board: scores[board])
    if scores[best] > 0:
        return best
    names, weights = zip(*GENERAL_BOARDS)
    return rng.choices(names, weights=weights)[0]


def _is_title(utterance: Utterance) -> bool:
    return TITLE_CHARS[0] <= len(utterance.text) <= TITLE_CHARS[1]


def _take_reply(
    utterances: Sequence[Utterance], start: int, *, avoid_speaker: str, min_chars: int, max_chars: int
) -> str | None:
    """The next turn from a speaker other than `avoid_speaker` (or anyone, if none follows soon).

    Consecutive utterances of that speaker are joined until `min_chars` is reached.
    Returns None when the turn is shorter than `min_chars` or longer than `max_chars`
    (a tiny model learns short replies best).
    """
    lookahead = utterances[start : start + 6]
    offset = next((i for i, u in enumerate(lookahead) if u.speaker != avoid_speaker), 0)
    first = start + offset
    if first >= len(utterances):
        return None
    speaker = utterances[first].speaker
    parts: list[str] = []
    end = first
    while end < len(utterances) and utterances[end].speaker == speaker and len("".join(parts)) < min_chars:
        if parts and len("".join(parts)) + len(utterances[end].text) > max_chars:
            break
        parts.append(utterances[end].text)
        end += 1
    reply = "".join(parts)
    return reply if min_chars <= len(reply) <= max_chars else None


def threads_from_conversation(
    conversation: Conversation,
    *,
    rng: random.Random,
    max_content_utterances: int = 6,
    min_reply_chars: int = 12,
    max_reply_chars: int = 80,
) -> list[SyntheticThread]:
    """Cut one conversation into threads, walking forward with a seeded stride."""
    utterances = conversation.utterances
    threads: list[SyntheticThread] = []
    i = 0
    while i < len(utterances) - 2:
        title_utt = utterances[i]
        if not _is_title(title_utt):
            i += 1
            continue
        n_content = rng.randint(1, max_content_utterances)
        content_utts = utterances[i + 1 : i + 1 + n_content]
        reply = _take_reply(
            utterances,
            i + 1 + len(content_utts),
            avoid_speaker=title_utt.speaker,
            min_chars=min_reply_chars,
            max_chars=max_reply_chars,
        )
        if reply is None:
            i += 1
            continue
        title = title_utt.text.rstrip(TITLE_TRAILING)
        content = "\n".join(u.text for u in content_utts)
        category = pick_category(f"{title}\n{content}\n{reply}", rng)
        threads.append(
            SyntheticThread(
                id=f"{conversation.name}-{i:04d}",
                conversation=conversation.name,
                category=category,
                title=title,
                content=content,
                reply=reply,
            )
        )
        # Overlapping windows multiply the data; the stride keeps them from being near-copies.
        i += rng.randint(2, 4)
    return threads


def split_conversations(
    conversations: Sequence[Conversation], *, held_out_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Conversation], list[Conversation]]:
    """(train, held_out) conversations, chosen by a seeded shuffle of names; order kept."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    names = sorted(c.name for c in conversations)
    random.Random(seed).shuffle(names)
    n_held = max(1, round(len(names) * held_out_fraction))
    held = set(names[:n_held])
    train = [c for c in conversations if c.name not in held]
    held_out = [c for c in conversations if c.name in held]
    return train, held_out


def build_thread_split(
    conversations: Sequence[Conversation],
    *,
    seed: int = 0,
    held_out_fraction: float = 0.1,
    max_content_utterances: int = 6,
    min_reply_chars: int = 12,
) -> ThreadSplit:
    """Seeded threads for every conversation, split by conversation.

    Each conversation gets its own RNG derived from the seed and its name, so adding or
    removing one conversation leaves the threads of the others unchanged.
    """
    train_convs, held_convs = split_conversations(conversations, held_out_fraction=held_out_fraction, seed=seed)

    def cut(convs: Sequence[Conversation]) -> list[SyntheticThread]:
        threads: list[SyntheticThread] = []
        for conv in convs:
            rng = random.Random(f"{seed}:{conv.name}")
            threads.extend(
                threads_from_conversation(
                    conv, rng=rng, max_content_utterances=max_content_utterances, min_reply_chars=min_reply_chars
                )
            )
        return threads

    return ThreadSplit(
        train=cut(train_convs),
        held_out=cut(held_convs),
        train_conversations=list(train_convs),
        held_out_conversations=list(held_convs),
    )
