"""The widget socket's client frames as typed messages, and the encoding of server frames.

Sans-I/O: :func:`parse_frame` turns one received text frame into one of the frame structs below or
raises :class:`FrameError` (the socket answers it with a ``bad_frame`` error frame and stays open). Its
limits are the published JSON Schemas' (``docs/schemas/client.*.json``; a unit test holds them equal),
plus two the schemas cannot state, checked before anything is decoded: the frame's size and its nesting
depth. msgspec refuses what ``json.loads`` let through to Redis and SQL: lone UTF-16 surrogates
(``"\\ud800"``), ``true`` or ``3.0`` for an integer, integers no seq can reach.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import msgspec

from support.attachments.validation import MAX_PER_MESSAGE
from support.errors import SwitchboardError

MAX_TEXT_CHARS = 4000  # a customer message longer than this is a paste of a document, not a chat turn
MAX_CLIENT_ID_CHARS = 128  # a UUID is 36; room for a client's own prefixing scheme
MAX_COMMENT_CHARS = 2000  # a rating comment is a sentence or two
# Seqs count the events of one conversation; 2^53 - 1 is also the largest integer a JavaScript client
# holds exactly. A larger `after` (2^64 used to reach Redis and fail there) is a bad frame.
MAX_SEQ = 2**53 - 1
# Every valid frame fits: 4000 code points written as surrogate-pair escapes (12 bytes each) are 48,000,
# the longest client_id 1,536. Larger frames up to the server's WebSocket limit (64 KiB, see
# support/server.py, beyond which the connection is closed with 1009) are refused here, unparsed.
MAX_FRAME_BYTES = 52 * 1024
# Valid frames are flat objects (depth 1); this leaves room for unknown fields a newer client adds (they are
# ignored) while a 1,000-deep frame is refused before a recursive parser sees it.
MAX_FRAME_DEPTH = 16


# A valid JSON escape that PostgreSQL text columns refuse: a message or comment holding one would be
# acknowledged, then fail when it is written to SQL (a rating at once, a message when archived).
NUL = "\x00"


class FrameError(SwitchboardError):
    """A frame the server cannot accept; the socket stays open."""

    code = "bad_frame"
    http_status = 400


ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CLIENT_ID_CHARS)]
# "Not only whitespace" (the schema's `"pattern": "\\S"`) is checked after decoding with str.isspace (the
# same Unicode whitespace as the regex's \S): a pattern in the Meta would cost a regex call per message.
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Score = Annotated[int, msgspec.Meta(ge=1, le=5)]
Comment = Annotated[str, msgspec.Meta(max_length=MAX_COMMENT_CHARS)]


AttachmentId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class MessageFrame(msgspec.Struct, tag_field="type", tag="message", frozen=True):
    """``{"type": "message", "client_id", "text", "attachments"?}``: a customer chat message; the
    attachments are ids from ``POST /api/v1/widget/attachments`` of this conversation."""

    client_id: ClientId
    text: Text
    attachments: Annotated[list[AttachmentId], msgspec.Meta(max_length=MAX_PER_MESSAGE)] = msgspec.field(
        default_factory=list
    )


class ResumeFrame(msgspec.Struct, tag_field="type", tag="resume", frozen=True):
    """``{"type": "resume", "after"}``: replay the persisted events after this seq."""

    after: Seq


class TypingFrame(msgspec.Struct, tag_field="type", tag="typing", frozen=True):
    """``{"type": "typing"}``."""


class RequestHumanFrame(msgspec.Struct, tag_field="type", tag="request_human", frozen=True):
    """``{"type": "request_human"}``."""


class RatingFrame(msgspec.Struct, tag_field="type", tag="rating", frozen=True):
    """``{"type": "rating", "score", "comment"?}``."""

    score: Score
    comment: Comment | None = None


class CloseFrame(msgspec.Struct, tag_field="type", tag="close", frozen=True):
    """``{"type": "close"}``: the customer ends the conversation."""


# The address a reply is e-mailed to. Stricter than what RFC 5321 allows, on purpose: it goes into a
# To header and an SMTP RCPT command, so only a dot-atom local part (no quotes, commas, angle brackets,
# spaces or line breaks: nothing that could add a recipient or a header) and an ASCII host name with a
# top-level domain of letters. Linear: each part excludes the separator after it.
CONTACT_EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,63}$"
)
MAX_EMAIL_CHARS = 254  # RFC 5321's longest usable address
ContactEmail = Annotated[
    str, msgspec.Meta(min_length=6, max_length=MAX_EMAIL_CHARS, pattern=CONTACT_EMAIL_PATTERN)
]


class ContactFrame(msgspec.Struct, tag_field="type", tag="contact", frozen=True):
    """``{"type": "contact", "email"}``: nobody can answer now; reply to this address by e-mail."""

    email: ContactEmail


ClientFrame = (
    MessageFrame | ResumeFrame | TypingFrame | RequestHumanFrame | RatingFrame | CloseFrame | ContactFrame
)
CLIENT_FRAME_TYPES: tuple[type[ClientFrame], ...] = (
    MessageFrame, ResumeFrame, TypingFrame, RequestHumanFrame, RatingFrame, CloseFrame, ContactFrame,
)  # fmt: skip

# Unknown properties are ignored (PROTOCOL.md lets clients add fields); the tag picks the struct.
_decoder = msgspec.json.Decoder(ClientFrame)


# A JSON string, escapes included (it starts with a literal quote, which the regex engine scans for fast).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


_OPENERS = frozenset(b"{[")
_CLOSERS = frozenset(b"}]")


def nesting_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when ``raw`` nests objects/arrays deeper than ``limit``; brackets inside strings do not count.

    Linear and cheap: a frame with at most ``limit`` opening brackets in all (every chat message that does
    not quote code) is decided by a few ``bytes.find`` calls (memchr; ``count`` would visit every byte);
    only the rest are scanned.
    """
    openers = 0
    for opener in (b"{", b"["):
        at = raw.find(opener)
        while at != -1:
            openers += 1
            if openers > limit:
                break
            at = raw.find(opener, at + 1)
    if openers <= limit:
        return False
    structure = _JSON_STRING.sub(b"", raw)  # what is left is short: keys, values and brackets of the frame
    if structure.count(b"{") + structure.count(b"[") <= limit:
        return False
    depth = 0
    for byte in structure:
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSERS:
            depth -= 1
    return False


def parse_frame(raw: str) -> ClientFrame:
    """One received text frame as a typed frame, or :class:`FrameError` saying what is wrong with it.

    Works on the frame's UTF-8 bytes: counting brackets in bytes is several times faster than in a str
    holding non-ASCII text, and msgspec would make the same UTF-8 copy of a str itself.
    """
    try:
        data = raw.encode()
    except UnicodeEncodeError:  # a lone surrogate in the str itself (a text frame is valid UTF-8: not seen)
        raise FrameError("frame is not valid UTF-8 text") from None
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"frame is larger than {MAX_FRAME_BYTES} bytes")
    if nesting_depth_exceeds(data, MAX_FRAME_DEPTH):
        raise FrameError(f"frame nests deeper than {MAX_FRAME_DEPTH} levels")
    try:
        frame = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        if str(exc).endswith("`$.email`"):  # the pattern is long; say what it means
            raise FrameError("invalid frame: `email` is not an e-mail address - at `$.email`") from None
        raise FrameError(f"invalid frame: {exc}") from None
    except msgspec.DecodeError as exc:
        # msgspec refuses lone surrogates while decoding; some come out as "truncated" input.
        raise FrameError(f"frame is not valid JSON text (lone surrogates are refused): {exc}") from None
    if isinstance(frame, MessageFrame):
        if frame.text.isspace():
            raise FrameError("invalid frame: `text` is only whitespace - at `$.text`")
        if NUL in frame.text or NUL in frame.client_id:
            raise FrameError("invalid frame: NUL (U+0000) is not allowed in `text` or `client_id`")
    elif isinstance(frame, ContactFrame) and frame.email.strip("\r\n") != frame.email:
        # Python's `$` also matches before a final line break, which the schema's (ECMA) `$` does not.
        raise FrameError("invalid frame: `email` is not an e-mail address - at `$.email`")
    elif isinstance(frame, RatingFrame) and frame.comment is not None and NUL in frame.comment:
        raise FrameError("invalid frame: NUL (U+0000) is not allowed in `comment` - at `$.comment`")
    return frame


def client_id_of(raw: str) -> str | None:
    """The refused frame's ``client_id``, when it is a JSON object carrying a non-empty string one.

    Only for frames :func:`parse_frame` refused (the error path), and only within its size and depth
    limits. ``json.loads`` on purpose: it reads the id of a message whose text held a lone surrogate, so the
    client learns which message was refused (the id is echoed escaped, see :func:`encode_frame`).
    """
    try:
        data = raw.encode()
    except UnicodeEncodeError:
        return None
    if len(data) > MAX_FRAME_BYTES or nesting_depth_exceeds(data, MAX_FRAME_DEPTH):
        return None
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    client_id = frame.get("client_id") if isinstance(frame, dict) else None
    return client_id if isinstance(client_id, str) and client_id else None


_encoder = msgspec.json.Encoder()


def encode_frame(frame: dict[str, Any]) -> str:
    """A server frame as JSON text; never fails.

    msgspec is the fast path. Whatever it cannot encode (a lone surrogate that reached a string some
    other way, a value of a type it does not know) goes through ``json.dumps`` with ASCII escapes and
    ``str`` for unknown types, so a frame is always delivered, never a reason to close the socket.
    """
    try:
        return _encoder.encode(frame).decode()
    except (TypeError, ValueError, OverflowError):  # UnicodeEncodeError is a ValueError
        return json.dumps(frame, separators=(",", ":"), default=str)
