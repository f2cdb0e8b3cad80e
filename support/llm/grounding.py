"""Answers that show their ground: the knowledge as citable documents, and the sources an answer cites.

The answer prompt carries each knowledge document (the policy, each article) as a ``document`` content
block with a ``content`` source: one text block per section (the document split on its Markdown
headings), citations enabled. The Messages API then answers with ``content_block_location`` citations
whose ``document_index`` and ``start_block_index``/``end_block_index`` name the documents and sections
directly; :func:`sources_of` turns them into the ``sources`` an assistant message records (document name,
section title, the cited text cut to :data:`CITED_TEXT_MAX_CHARS`, and the document's public ``url`` when
it has one).

Guidance (rules for the assistant) is never a document: it rides in the system prompt and is not cited.

A document may start with Markdown front matter (``---`` lines) holding a public ``url:`` for the widget's
"Source" link; the front matter is not sent to the model. Everything here is pure: the same policy always
gives the same blocks, byte for byte, so the documents stay a cacheable prefix.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from support.llm.policy import Policy, PolicyDocument

CITED_TEXT_MAX_CHARS = 300
DEFAULT_POLICY_TITLE = "Policy"
_HEADING = re.compile(r"^(#{1,6})[ \t]+(\S.*?)[ \t#]*$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_URL = re.compile(r"^https?://[^\s<>\"']+$")


@dataclass(frozen=True)
class Section:
    """One citable block of a document: the text from one heading up to the next."""

    title: str
    text: str


@dataclass(frozen=True)
class CitableDocument:
    """A knowledge document as the prompt sends it: its title, its sections, its public url if any."""

    title: str
    sections: tuple[Section, ...]
    url: str | None = None


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """``(fields, body)``: the ``key: value`` lines of a leading ``---`` block, and the text after it."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    fields: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields[key.strip().lower()] = value.strip().strip("\"'")
    return fields, text[match.end() :]


def public_url(fields: dict[str, str]) -> str | None:
    """The front matter's ``url`` when it is an absolute http(s) URL (anything else is ignored)."""
    url = fields.get("url", "")
    return url if _URL.match(url) else None


def split_sections(text: str, default_title: str) -> tuple[Section, ...]:
    """``text`` cut before every Markdown heading; text before the first heading is titled
    ``default_title``. Blank sections are dropped (the API rejects empty text blocks); code fences are
    respected (a ``#`` line inside one is not a heading)."""
    sections: list[Section] = []
    lines: list[str] = []
    title, fenced = default_title, False

    def close() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(title, body))

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading is not None:
            close()
            title, lines = heading.group(2).strip(), []
        lines.append(line)
    close()
    return tuple(sections)


@functools.lru_cache(maxsize=8)
def citable_documents(policy: Policy) -> tuple[CitableDocument, ...]:
    """The policy's documents (guidance left out) in prompt order, each split into sections.

    A policy without documents (loaded from a file or text) is one document titled ``Policy``; its
    guidance section, if the text ends with one, is left out like guidance documents are."""
    docs = policy.documents or (PolicyDocument(DEFAULT_POLICY_TITLE, "policy", policy.facts),)
    out: list[CitableDocument] = []
    for doc in docs:
        if doc.kind == "guidance":
            continue
        fields, body = front_matter(doc.text)
        sections = split_sections(body, doc.name)
        if sections:
            out.append(CitableDocument(doc.name, sections, public_url(fields)))
    return tuple(out)


def document_block(doc: CitableDocument) -> dict[str, Any]:
    """The ``document`` content block of one document: a ``content`` source, one text block per section,
    citations enabled (the API needs them enabled on every document of a request, or on none)."""
    return {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": s.text} for s in doc.sections]},
        "title": doc.title,
        "citations": {"enabled": True},
    }


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def citations_of(content: Iterable[Any]) -> list[Any]:
    """Every citation on the text blocks of a message's content (SDK objects or plain dicts)."""
    found: list[Any] = []
    for block in content:
        if _get(block, "type") == "text":
            found.extend(_get(block, "citations") or [])
    return found


def _cut(text: str) -> str:
    """The cited text for people: without a leading heading line (the section title says it) and cut."""
    first, newline, rest = text.lstrip().partition("\n")
    if newline and _HEADING.match(first) and rest.strip():
        text = rest
    text = " ".join(text.split())
    return text if len(text) <= CITED_TEXT_MAX_CHARS else text[: CITED_TEXT_MAX_CHARS - 1].rstrip() + "…"


def sources_of(content: Iterable[Any], documents: Sequence[CitableDocument]) -> list[dict[str, str]]:
    """The sources a message's citations name, in order of first citation, one per (document, section).

    A ``content_block_location`` citation names its sections by block index (a range may span several);
    another kind (or an index out of range) is matched to the section that holds its cited text. A
    citation of a document the request did not carry is ignored."""
    sources: list[dict[str, str]] = []
    seen: set[tuple[int, int]] = set()
    for citation in citations_of(content):
        index = _get(citation, "document_index")
        if not isinstance(index, int) or not 0 <= index < len(documents):
            continue
        doc = documents[index]
        cited = str(_get(citation, "cited_text") or "")
        start, end = _get(citation, "start_block_index"), _get(citation, "end_block_index")
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < len(doc.sections):
            blocks = range(start, min(max(end, start + 1), len(doc.sections)))
        else:
            needle = " ".join(cited.split())[:80]
            blocks = range(0)
            for i, section in enumerate(doc.sections):
                if needle and needle in " ".join(section.text.split()):
                    blocks = range(i, i + 1)
                    break
        for block in blocks:
            if (index, block) in seen:
                continue
            seen.add((index, block))
            source = {"document": doc.title, "section": doc.sections[block].title, "cited_text": _cut(cited)}
            if doc.url:
                source["url"] = doc.url
            sources.append(source)
    return sources


def public_sources(sources: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """What the customer's widget may show of ``sources``: document, section and url (no cited text)."""
    public: list[dict[str, str]] = []
    for source in sources:
        item = {"document": str(source.get("document", "")), "section": str(source.get("section", ""))}
        if source.get("url"):
            item["url"] = str(source["url"])
        public.append(item)
    return public
