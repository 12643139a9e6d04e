"""Load OpenBLAS before mlx on Linux: the mlx[cpu] wheel links a reference BLAS ~20x slower.

Must run before the first `import mlx`; the CLI calls `preload_openblas` first thing.

Serving also caps OpenBLAS's threads (`set_serving_threads`): its worker threads spin while
they wait for work, and on a small machine they take the cores that mlx's evaluation thread
and the Python side (the engine's worker, the bots' event loop) need. Measured on 2 cores,
8 concurrent replies ran 30% faster with one OpenBLAS thread than with two
(benchmarks/bench_engine.py, section 6). Training keeps every core.
"""

from __future__ import annotations

import ctypes
import logging
import os
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


def serving_threads(setting: int, *, cpus: int | None = None) -> int:
    """OpenBLAS threads for serving: `setting` if positive (LILM_BLAS_THREADS), else one fewer
    than the CPUs, leaving a core for the Python side."""
    if setting > 0:
        return setting
    return max(1, (cpus or os.cpu_count() or 1) - 1)


def set_serving_threads(setting: int = 0) -> int | None:
    """Cap OpenBLAS's threads for serving (process-wide); returns the count set, or None when
    OpenBLAS is not loaded or the user chose OPENBLAS_NUM_THREADS themselves."""
    if not sys.platform.startswith("linux"):  # only Linux loads OpenBLAS (see preload_openblas)
        return None
    if setting <= 0 and os.environ.get("OPENBLAS_NUM_THREADS"):
        return None
    setter = getattr(ctypes.CDLL(None), "openblas_set_num_threads", None)  # found when loaded globally
    if setter is None:
        return None
    count = serving_threads(setting)
    setter(count)
    log.info("OpenBLAS threads for serving: %d", count)
    return count
