"""OpenBLAS's thread cap while serving (core/blas.py)."""

from __future__ import annotations

import ctypes

import pytest

from core.blas import find_openblas, serving_threads, set_serving_threads
from core.errors import ConfigError
from core.settings import load_settings


@pytest.mark.parametrize(("setting", "cpus", "expected"), [(0, 1, 1), (0, 2, 1), (0, 8, 7), (3, 2, 3), (1, 64, 1)])
def test_serving_leaves_one_cpu_unless_told_otherwise(setting, cpus, expected):
    assert serving_threads(setting, cpus=cpus) == expected


def _openblas_threads() -> int:
    return ctypes.CDLL(None).openblas_get_num_threads()


@pytest.mark.skipif(find_openblas() is None, reason="OpenBLAS is not installed")
def test_the_cap_reaches_the_loaded_openblas(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = _openblas_threads()
    try:
        assert set_serving_threads(1) == 1
        assert _openblas_threads() == 1
        assert set_serving_threads(0) == serving_threads(0)
        assert _openblas_threads() == serving_threads(0)
    finally:
        ctypes.CDLL(None).openblas_set_num_threads(before)


def test_a_users_own_openblas_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert set_serving_threads(0) is None


def test_a_negative_thread_count_is_a_config_error():
    with pytest.raises(ConfigError, match="LILM_BLAS_THREADS"):
        load_settings(env_file=None, environ={"LILM_BLAS_THREADS": "-1"})
