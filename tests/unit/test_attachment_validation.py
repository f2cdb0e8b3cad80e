"""What an upload is, decided from its bytes (support/attachments/validation.py) and what the model reads
of it (support/attachments/prompt.py): pure functions, fed files built here."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from support.attachments.prompt import model_text
from support.attachments.validation import MAX_IMAGE_PIXELS, check_file, safe_filename
from support.errors import TooLarge, UnsupportedType, ValidationFailed
from support.settings import ATTACHMENT_TYPES

ALL = frozenset(ATTACHMENT_TYPES)
MAX = 1_000_000


def encoded(fmt: str, size: tuple[int, int] = (30, 20), **save: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "orange").save(out, fmt, **save)
    return out.getvalue()


def check(data: bytes, declared: str | None = None, name: str = "f", allowed: frozenset[str] = ALL) -> object:
    return check_file(data, declared_type=declared, filename=name, allowed=allowed, max_bytes=MAX)


@pytest.mark.parametrize(
    ("fmt", "mime", "ext"),
    [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg"), ("GIF", "image/gif", "gif"),
     ("WEBP", "image/webp", "webp")],
)  # fmt: skip
def test_each_image_type_is_recognised_by_content_and_re_encoded(fmt: str, mime: str, ext: str) -> None:
    checked = check_file(encoded(fmt), declared_type=None, filename="upload", allowed=ALL, max_bytes=MAX)
    assert (checked.content_type, checked.width, checked.height) == (mime, 30, 20)
    assert checked.filename == f"upload.{ext}"
    assert Image.open(io.BytesIO(checked.data)).format == fmt


def test_exif_is_dropped_by_re_encoding() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    data = encoded("JPEG", exif=exif.tobytes())
    assert b"SecretCam" in data
    checked = check_file(data, declared_type="image/jpeg", filename="a.jpg", allowed=ALL, max_bytes=MAX)
    assert b"SecretCam" not in checked.data


def test_a_declared_type_that_contradicts_the_content_is_refused() -> None:
    with pytest.raises(UnsupportedType, match="declared image/gif"):
        check_file(encoded("PNG"), declared_type="image/gif", filename="a.gif", allowed=ALL, max_bytes=MAX)
    # "I don't know" is not a lie
    checked = check_file(
        encoded("PNG"), declared_type="application/octet-stream", filename="a", allowed=ALL, max_bytes=MAX
    )
    assert checked.content_type == "image/png"


def test_a_type_the_admin_did_not_allow_is_refused() -> None:
    with pytest.raises(UnsupportedType):
        check_file(
            encoded("GIF"), declared_type=None, filename="a", allowed=frozenset({"image/png"}), max_bytes=MAX
        )


def test_a_pixel_bomb_is_refused_before_it_is_decoded() -> None:
    side = int(MAX_IMAGE_PIXELS**0.5) + 10
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG")  # a few KB on disk, 40 M pixels decoded
    with pytest.raises(UnsupportedType, match="pixels"):
        check_file(out.getvalue(), declared_type=None, filename="a", allowed=ALL, max_bytes=MAX)


def test_size_and_emptiness_limits() -> None:
    with pytest.raises(TooLarge):
        check_file(encoded("PNG"), declared_type=None, filename="a", allowed=ALL, max_bytes=10)
    with pytest.raises(ValidationFailed, match="empty"):
        check_file(b"", declared_type=None, filename="a", allowed=ALL, max_bytes=MAX)


def test_a_pdf_must_start_with_its_header_and_markup_is_refused_in_any_file() -> None:
    pdf = b"%PDF-1.7\n%%EOF\n"
    assert check_file(pdf, declared_type=None, filename="x", allowed=ALL, max_bytes=MAX).filename == "x.pdf"
    with pytest.raises(UnsupportedType, match="HTML"):
        check_file(
            pdf + b"<script>alert(1)</script>", declared_type=None, filename="x", allowed=ALL, max_bytes=MAX
        )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd.png"),
        ("C:\\Users\\ada\\photo.jpeg", "photo.png"),
        ("evil\r\nX-Header: 1.png", "evilX-Header: 1.png"),
        ("....", "attachment.png"),
        (None, "attachment.png"),
        ("a" * 500 + ".png", "a" * 114 + ".png"),
        ("rtl\u202egnp.exe", "rtlgnp.png"),
    ],
)
def test_file_names_keep_only_a_printable_last_segment_with_the_detected_extension(
    raw: str | None, expected: str
) -> None:
    assert safe_filename(raw, "image/png") == expected


def test_the_model_reads_a_marker_instead_of_the_file() -> None:
    extra = {
        "attachments": [
            {"id": "1", "name": "a.png", "kind": "image"},
            {"id": "2", "name": "b.pdf", "kind": "file"},
        ]
    }
    assert model_text("customer", "look", extra) == (
        "look\n[customer attached an image: a.png]\n[customer attached a PDF document: b.pdf]"
    )
    assert model_text("agent", "", {"attachments": [{"id": "3", "name": "c.pdf", "kind": "file"}]}) == (
        "[agent attached a PDF document: c.pdf]"
    )
    assert model_text("customer", "plain", {}) == "plain"
