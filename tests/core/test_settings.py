import pytest

from core.errors import ConfigError
from core.settings import DEFAULT_MODEL_DIR, Settings, load_settings


def test_defaults_point_at_the_embedded_model():
    settings = load_settings(env_file=None, environ={})
    assert settings.model == str(DEFAULT_MODEL_DIR)
    assert settings.lihkg_base_url == "https://lihkg.com"


def test_environment_overrides_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("LILM_MAX_TOKENS=42\nLILM_TEMPERATURE=0.3\nLILM_DEBUG=yes\n")
    settings = load_settings(env_file, environ={"LILM_MAX_TOKENS": "7"})
    assert settings.max_tokens == 7
    assert settings.temperature == 0.3
    assert settings.debug is True


def test_empty_keys_copied_from_the_template_mean_default(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("LILM_MODEL=\nLILM_MAX_TOKENS=\nLILM_STATE_DIR=\n")
    assert load_settings(env_file, environ={}) == load_settings(env_file=None, environ={})


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("LILM_MAX_TOKENS", "many", "LILM_MAX_TOKENS must be a int"),
        ("LILM_CANDIDATES", "20", "LILM_CANDIDATES"),
        ("LIHKG_BASE_URL", "ftp://lihkg.com", "LIHKG_BASE_URL"),
        ("LILM_DEBUG", "maybe", "LILM_DEBUG"),
        ("LILM_TOP_P", "0", "LILM_TOP_P"),
    ],
)
def test_invalid_values_say_what_was_expected(key, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_settings(env_file=None, environ={key: value})


def test_proxy_credentials_never_shown_in_repr():
    settings = load_settings(env_file=None, environ={"LIHKG_PROXY": "http://user:s3cret@proxy:8080"})
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings)


def test_template_documents_every_setting():
    from dataclasses import fields
    from pathlib import Path

    template = (Path(__file__).resolve().parents[2] / ".env.template").read_text()
    documented = {line.split("=", 1)[0] for line in template.splitlines() if "=" in line and not line.startswith("#")}
    assert documented == {f.metadata["env"] for f in fields(Settings)}


def test_extra_sensitive_words_ignore_blanks():
    settings = load_settings(env_file=None, environ={"LILM_SENSITIVE_WORDS": " 垃圾, ,,廢柴 "})
    assert settings.sensitive_words_extra == ["垃圾", "廢柴"]
