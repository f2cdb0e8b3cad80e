"""The knowledge as the answer prompt carries it: documents rendered to one text, and its version id.

Pure and deterministic: the same documents in the same order always give the same bytes, so one version
id names exactly one prompt prefix, and re-activating a version rebuilds its prefix byte for byte (a cache
entry still alive for it is read, not written again).

Layout: the policy's text as it was saved, then each article under a ``# Article: <name>`` title, in the
order the articles were first added (an edit keeps an article's place; a new article goes last), then,
when there is any, the guidance (admins' short rules for the assistant) in a section of its own: a
``# Guidance`` title and each rule under ``## <name>``, in the order the rules were first added. A
knowledge of the policy alone renders as the policy's text unchanged, so its version id is the one the
single policy file had (the sha256 prefix of its bytes) and ledger rows from before versions still match;
a knowledge without guidance renders exactly as before guidance existed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from support.llm.policy import PolicyDocument, policy_version

Kind = Literal["policy", "article", "guidance"]
KINDS: tuple[Kind, ...] = ("policy", "article", "guidance")
ARTICLE_TITLE = "# Article: "
GUIDANCE_TITLE = "# Guidance"
GUIDANCE_INTRO = "Rules the support team set for the assistant; they override anything above."
RULE_TITLE = "## "


@dataclass(frozen=True)
class Document:
    """One knowledge document: the policy (at most one), an article or a guidance rule (any number)."""

    name: str
    kind: Kind
    text: str

    @property
    def sha256(self) -> str:
        """Full sha256 of the text's UTF-8 bytes: how the text is stored once for every version."""
        return text_sha256(self.text)


def text_sha256(text: str) -> str:
    """Hex sha256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ordered(documents: Sequence[Document]) -> list[Document]:
    """The policy first, then the articles, then the guidance, each kind in the order given."""
    return [d for kind in KINDS for d in documents if d.kind == kind]


def guidance(documents: Sequence[Document]) -> str:
    """The guidance section as :func:`render` ends with it ("" when there is no guidance)."""
    rules = [d for d in documents if d.kind == "guidance"]
    if not rules:
        return ""
    parts = [f"{GUIDANCE_TITLE}\n\n{GUIDANCE_INTRO}"] + [
        f"{RULE_TITLE}{d.name}\n\n{d.text.strip()}" for d in rules
    ]
    return "\n\n".join(parts) + "\n"


def render(documents: Sequence[Document]) -> str:
    """The knowledge text of ``documents`` (policy first, articles in their order, then the guidance)."""
    docs = [d for d in ordered(documents) if d.kind != "guidance"]
    rules = guidance(documents)
    if len(docs) == 1 and docs[0].kind == "policy" and not rules:
        return docs[0].text
    parts = [
        d.text.strip() if d.kind == "policy" else f"{ARTICLE_TITLE}{d.name}\n\n{d.text.strip()}" for d in docs
    ]
    return "\n\n".join([*parts, rules.rstrip("\n")] if rules else parts) + "\n"


def version_id(text: str) -> str:
    """The id of a knowledge text: 12 hex characters of its sha256 (as a policy file's version)."""
    return policy_version(text.encode("utf-8"))


def prompt_documents(documents: Sequence[Document]) -> tuple[PolicyDocument, ...]:
    """``documents`` in :func:`ordered` order as the answer prompt's citable documents take them."""
    return tuple(PolicyDocument(d.name, d.kind, d.text) for d in ordered(documents))
