"""Load OpenBLAS before mlx on Linux: the mlx[cpu] wheel links a reference BLAS ~20x slower.

Must run before the first `import mlx`; the CLI calls `preload_openblas` first thing.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

OPENBLAS_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)


def find_openblas() -> str | None:
    """The first OpenBLAS shared library present on this machine, if any."""
    return next((path for path in OPENBLAS_CANDIDATES if Path(path).is_file()), None)


def preload_openblas(setting: str = "auto") -> str | None:
    """Load OpenBLAS globally so mlx binds its BLAS symbols to it. Returns the path loaded.

    `setting` is LILM_BLAS: "auto" (find it), "off", or an explicit library path.
    """
    if setting == "off" or not sys.platform.startswith("linux"):
        return None
    if "mlx" in sys.modules or "mlx.core" in sys.modules:
        log.debug("mlx already imported; OpenBLAS preload skipped")
        return None
    path = find_openblas() if setting == "auto" else setting
    if path is None:
        log.info("OpenBLAS not found: mlx will use its slow reference BLAS (see README)")
        return None
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as error:
        log.warning("could not load OpenBLAS from %s: %s", path, error)
        return None
    return path
