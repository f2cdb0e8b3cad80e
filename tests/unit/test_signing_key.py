"""The signing key: given, read from a file, or generated once (0600) and shared by concurrent starts."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from support.errors import ConfigurationError
from support.settings import AppSettings
from support.signing_key import KEY_FILE_NAME, load_or_create_key, resolve_signing_key

STRONG = "a-strong-signing-key-from-the-vault-0123456789"


def settings(tmp_path: Path, **values: object) -> AppSettings:
    return AppSettings.model_validate({"data_dir": tmp_path, **values})


def test_without_a_key_one_is_generated_private_and_reused(tmp_path: Path) -> None:
    first = resolve_signing_key(settings(tmp_path))
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert resolve_signing_key(settings(tmp_path)) == first
    assert resolve_signing_key(settings(tmp_path / "other")) != first


def _load(path: str) -> str:
    return load_or_create_key(Path(path))


def test_processes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    with multiprocessing.get_context("fork").Pool(8) as pool:
        keys = pool.map(_load, [str(path)] * 32)
    assert len(set(keys)) == 1
    assert path.read_text().strip() == keys[0]
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]  # no temporary files left


def test_the_environment_wins_over_the_file_and_the_file_over_generating(tmp_path: Path) -> None:
    key_file = tmp_path / "mounted-secret"
    key_file.write_text(STRONG + "-file\n")
    assert resolve_signing_key(settings(tmp_path, secret_key_file=key_file)) == STRONG + "-file"
    both = settings(tmp_path, secret_key=SecretStr(STRONG), secret_key_file=key_file)
    assert resolve_signing_key(both) == STRONG
    blank = settings(tmp_path, secret_key=SecretStr(""), secret_key_file=key_file)  # compose's `:-`
    assert resolve_signing_key(blank) == STRONG + "-file"
    assert not (tmp_path / KEY_FILE_NAME).exists()


@pytest.mark.parametrize("environment", ["development", "production"])
def test_the_key_earlier_releases_published_is_refused_in_every_mode(
    tmp_path: Path, environment: str
) -> None:
    published = settings(
        tmp_path, environment=environment, secret_key=SecretStr("dev-insecure-placeholder-secret-change-me")
    )
    with pytest.raises(ConfigurationError, match="published"):
        resolve_signing_key(published)


def test_production_refuses_a_short_key_from_the_environment_or_a_file(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("too-short")
    with pytest.raises(ConfigurationError, match="too short"):
        resolve_signing_key(settings(tmp_path, environment="production", secret_key_file=short))
    with pytest.raises(ConfigurationError, match="at least 32"):
        settings(tmp_path, environment="production", secret_key=SecretStr("too-short")).check_production()
    assert resolve_signing_key(settings(tmp_path, secret_key_file=short)) == "too-short"  # development


def test_a_missing_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        resolve_signing_key(settings(tmp_path, secret_key_file=tmp_path / "absent"))
