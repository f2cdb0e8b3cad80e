"""The key that signs widget session tokens and agent tokens: where it comes from, and that it is strong.

In order: ``SWITCHBOARD_SECRET_KEY``; else the file ``SWITCHBOARD_SECRET_KEY_FILE`` names (a Docker or
Kubernetes secret); else a random key generated once into the data directory (``secret_key``, mode
0600) and read from there on every later start. There is no built-in key: a key anyone can read in the
source lets anyone forge an admin token.

Generating is safe when several processes start at once on one data directory: each writes its candidate
to a private temporary file and hard-links it to the final name, which fails if the name exists, so
exactly one candidate wins and every process (the losers re-read it) signs with the same key.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path

from support.errors import ConfigurationError
from support.settings import MIN_SECRET_KEY_CHARS, AppSettings

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret_key"
# 48 random bytes (384 bits): above HS256's 256-bit output, so the key is never the weak part.
GENERATED_KEY_BYTES = 48
# SHA-256 of keys that earlier releases published (the settings default and docker-compose.yml's):
# refused in every mode, so an old .env or compose file cannot bring them back.
PUBLISHED_KEY_SHA256 = frozenset({"ffd67205817fa817f546cb7c8c4d039bd6ec39e879dd43d8044ad81c257fee19"})


def resolve_signing_key(app: AppSettings) -> str:
    """The signing key this process must use; :class:`ConfigurationError` if it is unusable."""
    given = app.secret_key.get_secret_value().strip() if app.secret_key is not None else ""
    if given:  # an empty variable counts as unset (docker-compose passes `${SWITCHBOARD_SECRET_KEY:-}`)
        key, source = given, "SWITCHBOARD_SECRET_KEY"
    elif app.secret_key_file is not None:
        key = _read_key_file(app.secret_key_file)
        source = f"SWITCHBOARD_SECRET_KEY_FILE ({app.secret_key_file})"
    else:
        path = app.data_dir / KEY_FILE_NAME
        key, source = load_or_create_key(path), f"{path} (generated once, reused)"
    check_key(key, production=app.environment == "production", source=source)
    log.info("token signing key from %s", source)
    return key


def check_key(key: str, *, production: bool, source: str) -> None:
    """Refuse an empty or published key anywhere, and a short one in production."""
    if not key:
        raise ConfigurationError(f"the signing key from {source} is empty")
    if hashlib.sha256(key.encode()).hexdigest() in PUBLISHED_KEY_SHA256:
        raise ConfigurationError(
            f"the signing key from {source} is a published placeholder; set a secret one"
        )
    if len(key) < MIN_SECRET_KEY_CHARS:
        if production:
            raise ConfigurationError(
                f"the signing key from {source} is too short ({len(key)} characters); production needs "
                f"at least {MIN_SECRET_KEY_CHARS}"
            )
        log.warning("the signing key from %s is shorter than %d characters", source, MIN_SECRET_KEY_CHARS)


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read SWITCHBOARD_SECRET_KEY_FILE {path}: {exc.strerror}") from exc


def load_or_create_key(path: Path) -> str:
    """The key in ``path``, generating it first (mode 0600, atomically) if there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        return _existing_key(path)
    candidate = secrets.token_urlsafe(GENERATED_KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(candidate + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces: a key another process already uses stays
        except FileExistsError:
            return _existing_key(path)  # another process won the race: use its key
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the new name durable too (best effort)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    log.info("generated a new token signing key in %s", path)
    return candidate


def _existing_key(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); it should be 0600", path, mode)
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ConfigurationError(f"{path} is empty; delete it to have a new key generated")
    return key
