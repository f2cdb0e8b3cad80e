"""A policy text and its version: what the answer prompt carries (the active knowledge version, rendered by
support.knowledge.render) and what the ledger records.

``load_policy`` reads the ``SWITCHBOARD_POLICY_PATH`` file, which seeds the first knowledge version.

The version is a content hash, not a file date or a counter: two processes that load the same bytes agree
on it without coordination, and the ledger row of every model call records it (``policy_version=``) so an
answer can be traced back to the exact policy text it was written from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from support.errors import ConfigurationError

POLICY_VERSION_HEX_CHARS = 12  # 48 bits of sha256: collisions are irrelevant among a handful of versions


def policy_version(data: bytes) -> str:
    """The version of a policy's bytes: the first 12 hex characters of their sha256."""
    return hashlib.sha256(data).hexdigest()[:POLICY_VERSION_HEX_CHARS]


@dataclass(frozen=True)
class PolicyDocument:
    """One knowledge document as the answer prompt carries it for citations: the policy, an article or a
    guidance rule (guidance goes into the system prompt and is never cited)."""

    name: str
    kind: Literal["policy", "article", "guidance"]
    text: str


@dataclass(frozen=True)
class Policy:
    """A loaded policy: its text (what the model reads) and its version (what the ledger records)."""

    text: str
    version: str
    # The guidance section the text ends with (support.knowledge.render.guidance; "" when none): the
    # evaluation judge checks replies against it apart from the rest of the knowledge.
    guidance: str = ""
    # The documents the text was rendered from (support.knowledge.render.ordered), for the answer prompt's
    # citable document blocks; empty for a policy from a file or from text: then the policy is one document.
    documents: tuple[PolicyDocument, ...] = ()

    @property
    def facts(self) -> str:
        """The text without its guidance section: what the offline responder may quote to a customer
        (a rule for the assistant is never an answer) and what the judge reads as the knowledge."""
        if self.guidance and self.text.endswith(self.guidance):
            return self.text[: -len(self.guidance)].rstrip("\n") + "\n"
        return self.text

    @classmethod
    def from_text(cls, text: str) -> Policy:
        """A policy from text in memory (tests, tools); versioned over its UTF-8 bytes like a file."""
        return cls(text=text, version=policy_version(text.encode("utf-8")))


def load_policy(path: Path | str) -> Policy:
    """Read a UTF-8 policy file; a missing, unreadable, non-UTF-8 or empty file is a configuration error.

    The version hashes the raw bytes (not the decoded text) so it matches ``sha256sum`` of the file.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the policy file {path}: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"the policy file {path} is not UTF-8: {exc}") from exc
    if not text.strip():
        raise ConfigurationError(f"the policy file {path} is empty")
    return Policy(text=text, version=policy_version(data))
