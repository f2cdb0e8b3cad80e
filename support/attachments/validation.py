"""What an uploaded file is, decided from its bytes alone (sans-I/O).

The declared media type and the file name are claims; the content decides. ``filetype`` reads the magic
bytes; an image must then decode with Pillow and is re-encoded, which drops whatever rode along (EXIF with
a location, bytes appended after the image, a script hidden in a comment chunk): what is stored and served
is a fresh file of the detected type. A PDF cannot be re-encoded here; it must start with the PDF header
and is only ever served as a download (``Content-Disposition: attachment``). Any file whose first bytes a
browser's sniffer would read as HTML or script is refused outright, whatever its magic says.
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass

import filetype
from PIL import Image, UnidentifiedImageError

from support.errors import TooLarge, UnsupportedType, ValidationFailed

# Pillow's own bomb guard warns at 89 M pixels; a support screenshot or phone photo is far below this.
MAX_IMAGE_PIXELS = 40_000_000
# Browsers sniff the first 512 bytes (WHATWG MIME sniffing); 1 KiB covers it with room.
SNIFF_WINDOW_BYTES = 1024
MAX_FILENAME_CHARS = 120  # shown in the transcript and in Content-Disposition
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_PER_MESSAGE = 4  # files one chat message or one ticket may carry (the frame and ticket schemas use it)
PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
EXTENSIONS = {
    "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp",
    "application/pdf": "pdf",
}  # fmt: skip
# Declared types that mean "I do not know": not a claim that can be a lie.
UNKNOWN_DECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_HTML_MARKERS = re.compile(
    rb"<\s*(!doctype|html|head|body|script|svg|iframe|object|embed|\?xml|a\s|img\s|style|meta)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class CheckedFile:
    """A file that passed: its bytes (re-encoded for an image), detected type and display name."""

    data: bytes
    content_type: str
    filename: str
    width: int | None = None
    height: int | None = None


def safe_filename(raw: str | None, content_type: str) -> str:
    """A display name: the last path segment, printable characters only, the detected type's extension.

    Never used to build a path (storage keys are generated), but it goes into a header and a page."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] not in "CZ"
                   or ch == " ")  # fmt: skip
    name = name.strip(" .")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = stem[: MAX_FILENAME_CHARS - 6].strip(" .") or "attachment"
    return f"{stem}.{EXTENSIONS[content_type]}"


def check_file(
    data: bytes, *, declared_type: str | None, filename: str | None, allowed: frozenset[str], max_bytes: int
) -> CheckedFile:
    """The checked file, or :class:`TooLarge` / :class:`UnsupportedType` / :class:`ValidationFailed`."""
    if len(data) > max_bytes:
        raise TooLarge(f"the file is larger than {max_bytes} bytes")
    if not data:
        raise ValidationFailed("the file is empty")
    if _HTML_MARKERS.search(data[:SNIFF_WINDOW_BYTES]):
        raise UnsupportedType("the file holds HTML or script; only images and PDF are accepted")
    kind = filetype.guess(data)
    detected: str | None = kind.mime if kind is not None else None
    if detected not in allowed:
        raise UnsupportedType(f"the file's content is not an accepted type ({', '.join(sorted(allowed))})")
    declared = (declared_type or "").split(";", 1)[0].strip().lower()
    if declared not in UNKNOWN_DECLARED and declared != detected:
        raise UnsupportedType(f"the file was declared {declared} but its content is {detected}")
    if detected == "application/pdf":
        if not data.startswith(b"%PDF-"):
            raise UnsupportedType("the PDF does not start with a PDF header")
        return CheckedFile(data, detected, safe_filename(filename, detected))
    return _reencoded(data, detected, filename)


def _reencoded(data: bytes, content_type: str, filename: str | None) -> CheckedFile:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > MAX_IMAGE_PIXELS:
                raise UnsupportedType(f"the image has more than {MAX_IMAGE_PIXELS} pixels")
            probe.verify()  # structure and checksums; the image must be reopened after it
        with Image.open(io.BytesIO(data)) as image:
            if image.format != PIL_FORMATS[content_type]:
                raise UnsupportedType(f"the image decodes as {image.format}, not {content_type}")
            image.load()
            out = io.BytesIO()
            if content_type == "image/jpeg":
                image.convert("RGB").save(out, "JPEG", quality=90)
            elif content_type == "image/gif":
                image.save(out, "GIF", save_all=getattr(image, "is_animated", False))
            else:
                image.save(out, PIL_FORMATS[content_type])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, UnsupportedType):
            raise
        raise UnsupportedType("the image does not decode") from None
    return CheckedFile(out.getvalue(), content_type, safe_filename(filename, content_type), width, height)
