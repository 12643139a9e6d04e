"""The bundled demo threads (written for this project), as prompts for `lilm demo`."""

from __future__ import annotations

import json
from importlib import resources

from core.reply import ThreadPrompt


def demo_threads() -> list[ThreadPrompt]:
    """Every bundled demo thread, in file order."""
    raw = resources.files("core").joinpath("data/demo_threads.json").read_text(encoding="utf-8")
    return [ThreadPrompt(category=t["category"], title=t["title"], content=t["content"]) for t in json.loads(raw)]
