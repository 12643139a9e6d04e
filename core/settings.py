"""All settings in one typed object, read from the environment and `.env` (python-dotenv).

The environment wins over `.env`; `.env.template` documents every key with its default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from dotenv import dotenv_values

from core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = PROJECT_ROOT / "model" / "lilm-tiny"


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lilm"


@dataclass(frozen=True)
class Settings:
    """Every tunable of the project. Field metadata `env` names the variable that sets it."""

    model: str = field(default=str(DEFAULT_MODEL_DIR), metadata={"env": "LILM_MODEL"})
    adapter: str = field(default="", metadata={"env": "LILM_ADAPTER"})
    system_message: str = field(default="", metadata={"env": "LILM_SYSTEM_MESSAGE"})
    max_tokens: int = field(default=160, metadata={"env": "LILM_MAX_TOKENS"})
    temperature: float = field(default=0.8, metadata={"env": "LILM_TEMPERATURE"})
    top_p: float = field(default=0.95, metadata={"env": "LILM_TOP_P"})
    repetition_penalty: float = field(default=1.1, metadata={"env": "LILM_REPETITION_PENALTY"})
    candidates: int = field(default=1, metadata={"env": "LILM_CANDIDATES"})
    prompt_token_budget: int = field(default=2048, metadata={"env": "LILM_PROMPT_TOKEN_BUDGET"})
    sensitive_words_file: str = field(default="", metadata={"env": "LILM_SENSITIVE_WORDS_FILE"})
    sensitive_words: str = field(default="", metadata={"env": "LILM_SENSITIVE_WORDS"})
    state_dir: str = field(default_factory=lambda: str(_default_state_dir()), metadata={"env": "LILM_STATE_DIR"})
    blas: str = field(default="auto", metadata={"env": "LILM_BLAS"})
    blas_threads: int = field(default=0, metadata={"env": "LILM_BLAS_THREADS"})
    debug: bool = field(default=False, metadata={"env": "LILM_DEBUG"})
    lihkg_base_url: str = field(default="https://lihkg.com", metadata={"env": "LIHKG_BASE_URL"})
    lihkg_proxy: str = field(default="", metadata={"env": "LIHKG_PROXY", "secret": True})
    lihkg_timeout: float = field(default=10.0, metadata={"env": "LIHKG_TIMEOUT"})
    lihkg_retries: int = field(default=3, metadata={"env": "LIHKG_RETRIES"})
    lihkg_max_retry_after: float = field(default=30.0, metadata={"env": "LIHKG_MAX_RETRY_AFTER"})
    lihkg_cache_ttl: float = field(default=300.0, metadata={"env": "LIHKG_CACHE_TTL"})
    # Scraper (`lilm scrape`, pipeline/scrape.py); empty scrape_db = <state_dir>/lihkg.sqlite3.
    scrape_db: str = field(default="", metadata={"env": "LILM_SCRAPE_DB"})
    lihkg_requests_per_minute: float = field(default=30.0, metadata={"env": "LIHKG_REQUESTS_PER_MINUTE"})
    lihkg_proxies: str = field(default="", metadata={"env": "LIHKG_PROXIES", "secret": True})
    lihkg_proxy_file: str = field(default="", metadata={"env": "LIHKG_PROXY_FILE"})
    scrape_direct: bool = field(default=True, metadata={"env": "LILM_SCRAPE_DIRECT"})
    scrape_concurrency: int = field(default=8, metadata={"env": "LILM_SCRAPE_CONCURRENCY"})
    scrape_max_attempts: int = field(default=5, metadata={"env": "LILM_SCRAPE_MAX_ATTEMPTS"})
    # Telegram bot (bots/telegram_bot.py); see .env.template for what each one does.
    telegram_bot_token: str = field(default="", metadata={"env": "TELEGRAM_BOT_TOKEN", "secret": True})
    telegram_base_url: str = field(default="https://api.telegram.org/bot", metadata={"env": "TELEGRAM_BASE_URL"})
    telegram_allowed_users: str = field(default="", metadata={"env": "TELEGRAM_ALLOWED_USERS"})
    telegram_allowed_chats: str = field(default="", metadata={"env": "TELEGRAM_ALLOWED_CHATS"})
    telegram_admin_ids: str = field(default="", metadata={"env": "TELEGRAM_ADMIN_IDS"})
    telegram_rate_limit: int = field(default=5, metadata={"env": "TELEGRAM_RATE_LIMIT"})
    telegram_rate_window: float = field(default=60.0, metadata={"env": "TELEGRAM_RATE_WINDOW"})
    telegram_queue_size: int = field(default=20, metadata={"env": "TELEGRAM_QUEUE_SIZE"})
    telegram_workers: int = field(default=8, metadata={"env": "TELEGRAM_WORKERS"})
    telegram_max_candidates: int = field(default=3, metadata={"env": "TELEGRAM_MAX_CANDIDATES"})
    telegram_stream: str = field(default="auto", metadata={"env": "TELEGRAM_STREAM"})
    telegram_edit_interval: float = field(default=1.5, metadata={"env": "TELEGRAM_EDIT_INTERVAL"})
    telegram_group_edit_interval: float = field(default=3.0, metadata={"env": "TELEGRAM_GROUP_EDIT_INTERVAL"})
    telegram_draft_interval: float = field(default=0.5, metadata={"env": "TELEGRAM_DRAFT_INTERVAL"})
    telegram_stream_hold: float = field(default=1.0, metadata={"env": "TELEGRAM_STREAM_HOLD"})
    telegram_link_preview: str = field(default="off", metadata={"env": "TELEGRAM_LINK_PREVIEW"})
    telegram_group_all_links: bool = field(default=True, metadata={"env": "TELEGRAM_GROUP_ALL_LINKS"})
    telegram_webhook_url: str = field(default="", metadata={"env": "TELEGRAM_WEBHOOK_URL"})
    telegram_webhook_listen: str = field(default="127.0.0.1", metadata={"env": "TELEGRAM_WEBHOOK_LISTEN"})
    telegram_webhook_port: int = field(default=8443, metadata={"env": "TELEGRAM_WEBHOOK_PORT"})
    telegram_webhook_secret: str = field(default="", metadata={"env": "TELEGRAM_WEBHOOK_SECRET", "secret": True})
    # Discord bot (bots/discord_bot.py); see .env.template for what each one does.
    discord_bot_token: str = field(default="", metadata={"env": "DISCORD_BOT_TOKEN", "secret": True})
    discord_allowed_guilds: str = field(default="", metadata={"env": "DISCORD_ALLOWED_GUILDS"})
    discord_allowed_channels: str = field(default="", metadata={"env": "DISCORD_ALLOWED_CHANNELS"})
    discord_allowed_roles: str = field(default="", metadata={"env": "DISCORD_ALLOWED_ROLES"})
    discord_allowed_users: str = field(default="", metadata={"env": "DISCORD_ALLOWED_USERS"})
    discord_admin_ids: str = field(default="", metadata={"env": "DISCORD_ADMIN_IDS"})
    discord_allow_dms: bool = field(default=True, metadata={"env": "DISCORD_ALLOW_DMS"})
    discord_rate_limit: int = field(default=5, metadata={"env": "DISCORD_RATE_LIMIT"})
    discord_rate_window: float = field(default=60.0, metadata={"env": "DISCORD_RATE_WINDOW"})
    discord_workers: int = field(default=8, metadata={"env": "DISCORD_WORKERS"})
    discord_queue_size: int = field(default=20, metadata={"env": "DISCORD_QUEUE_SIZE"})
    discord_max_candidates: int = field(default=3, metadata={"env": "DISCORD_MAX_CANDIDATES"})
    discord_edit_interval: float = field(default=1.5, metadata={"env": "DISCORD_EDIT_INTERVAL"})
    discord_stream_hold: float = field(default=1.0, metadata={"env": "DISCORD_STREAM_HOLD"})
    discord_message_content: bool = field(default=False, metadata={"env": "DISCORD_MESSAGE_CONTENT"})
    discord_auto_link_channels: str = field(default="", metadata={"env": "DISCORD_AUTO_LINK_CHANNELS"})
    discord_dev_guild: str = field(default="", metadata={"env": "DISCORD_DEV_GUILD"})
    # Serving: which backend generates, and the in-process engine's limits (core/engine.py).
    backend: str = field(default="mlx", metadata={"env": "LILM_BACKEND"})
    openai_base_url: str = field(default="", metadata={"env": "LILM_OPENAI_BASE_URL"})
    openai_model: str = field(default="", metadata={"env": "LILM_OPENAI_MODEL"})
    openai_api_key: str = field(default="", metadata={"env": "LILM_OPENAI_API_KEY", "secret": True})
    generation_timeout: float = field(default=120.0, metadata={"env": "LILM_GENERATION_TIMEOUT"})
    engine_max_batch: int = field(default=16, metadata={"env": "LILM_ENGINE_MAX_BATCH"})
    engine_max_waiting: int = field(default=32, metadata={"env": "LILM_ENGINE_MAX_WAITING"})
    engine_prefix_cache: bool = field(default=True, metadata={"env": "LILM_ENGINE_PREFIX_CACHE"})

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def sensitive_words_extra(self) -> list[str]:
        """Extra words from `LILM_SENSITIVE_WORDS` (comma separated; blanks ignored)."""
        return [w.strip() for w in self.sensitive_words.split(",") if w.strip()]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(name: str, raw: str, kind: type) -> object:
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    return raw


def load_settings(env_file: str | os.PathLike | None = ".env", environ: dict | None = None) -> Settings:
    """Build Settings from `.env` (if present) overlaid by the environment.

    >>> load_settings(env_file=None, environ={"LILM_MAX_TOKENS": "50"}).max_tokens
    50
    """
    values: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update(dotenv_values(env_file))
    values.update(os.environ if environ is None else environ)
    kinds = {"str": str, "int": int, "float": float, "bool": bool}
    chosen = {}
    for f in fields(Settings):
        raw = values.get(f.metadata["env"])
        if raw is None or not raw.strip():  # an empty key in .env means "use the default"
            continue
        chosen[f.name] = _convert(f.metadata["env"], raw, kinds[f.type])
    settings = Settings(**chosen)
    _validate(settings)
    _validate_serving(settings)
    return settings


def _validate(s: Settings) -> None:
    if not s.lihkg_base_url.startswith(("http://", "https://")):
        raise ConfigError(f"LIHKG_BASE_URL must start with http:// or https://, got {s.lihkg_base_url!r}")
    if not 0 < s.max_tokens <= 8192:
        raise ConfigError(f"LILM_MAX_TOKENS must be in 1..8192, got {s.max_tokens}")
    if not 1 <= s.candidates <= 8:
        raise ConfigError(f"LILM_CANDIDATES must be in 1..8, got {s.candidates}")
    if s.temperature < 0:
        raise ConfigError(f"LILM_TEMPERATURE must be >= 0, got {s.temperature}")
    if not 0 < s.top_p <= 1:
        raise ConfigError(f"LILM_TOP_P must be in (0, 1], got {s.top_p}")
    if s.lihkg_retries < 0 or s.lihkg_timeout <= 0:
        raise ConfigError("LIHKG_RETRIES must be >= 0 and LIHKG_TIMEOUT > 0")


def _validate_serving(s: Settings) -> None:
    if s.backend not in ("mlx", "openai"):
        raise ConfigError(f"LILM_BACKEND must be mlx or openai, got {s.backend!r}")
    if s.backend == "openai" and not s.openai_base_url.startswith(("http://", "https://")):
        raise ConfigError(f"LILM_OPENAI_BASE_URL must be an http(s) URL when LILM_BACKEND=openai, got {s.openai_base_url!r}")
    if s.blas_threads < 0:
        raise ConfigError(f"LILM_BLAS_THREADS must be >= 0 (0 = one fewer than the CPUs), got {s.blas_threads}")
    if s.generation_timeout < 0:
        raise ConfigError(f"LILM_GENERATION_TIMEOUT must be >= 0 (0 = no deadline), got {s.generation_timeout}")
    if not s.candidates <= s.engine_max_batch <= 256:
        raise ConfigError(f"LILM_ENGINE_MAX_BATCH must be in LILM_CANDIDATES..256, got {s.engine_max_batch}")
    if s.engine_max_waiting < 0:
        raise ConfigError(f"LILM_ENGINE_MAX_WAITING must be >= 0, got {s.engine_max_waiting}")
