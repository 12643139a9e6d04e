"""The `X-LI-DEVICE` id: 40 hex digits, made once per install and kept in the state dir.

A browser keeps the same device id across visits; so do we, so LIHKG sees one steady
client rather than a new device on every restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

DEVICE_ID_FILE = "device_id"
_DEVICE_ID_RE = re.compile(r"^[0-9a-f]{40}$")


def new_device_id() -> str:
    """A fresh id in LIHKG's form: the sha1 hex of a random uuid.

    >>> len(new_device_id()), new_device_id() != new_device_id()
    (40, True)
    """
    return hashlib.sha1(uuid.uuid4().hex.encode()).hexdigest()


def is_device_id(text: str) -> bool:
    """
    >>> is_device_id("a" * 40), is_device_id("xyz")
    (True, False)
    """
    return bool(_DEVICE_ID_RE.match(text))


def load_device_id(state_dir: str | os.PathLike | None) -> str:
    """The id stored in `<state_dir>/device_id`, created on first use.

    When the directory cannot be written, a fresh in-memory id is returned (and a warning
    logged): requests still work, the id just does not survive a restart.
    """
    if not state_dir:
        return new_device_id()
    path = Path(state_dir) / DEVICE_ID_FILE
    stored = _read_id(path)
    if stored is not None:
        return stored
    try:
        return _create_id_file(path)
    except OSError as exc:
        log.warning("cannot keep the LIHKG device id in %s (%s); using an in-memory id", path.parent, exc)
        return new_device_id()


def _read_id(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if is_device_id(text) else None


def _create_id_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".device_id.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as tmp:
            tmp.write(new_device_id() + "\n")
        try:
            # link() refuses to overwrite: when two processes race, the first id wins for both.
            os.link(tmp_name, path)
        except FileExistsError:
            existing = _read_id(path)
            if existing is not None:
                return existing
            os.replace(tmp_name, path)  # a corrupt file: replace it atomically
        except OSError:
            os.replace(tmp_name, path)  # no hard links on this filesystem
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    stored = _read_id(path)
    if stored is None:
        raise OSError(f"{path} unreadable right after writing it")
    return stored
