"""What you see is what you sign: the review page's previews, rendered locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.portal.preview import PreviewUnavailable, preview_of, render_pdf_page

SAMPLES = Path(__file__).resolve().parents[3] / "services" / "portal" / "samples"


def test_a_pdf_is_rendered_page_by_page() -> None:
    pdf = (SAMPLES / "employment-contract.pdf").read_bytes()
    shown = preview_of(pdf)
    assert (shown.kind, shown.pages, shown.total_pages) == ("pdf", 1, 1)
    image = render_pdf_page(pdf, 1)
    assert image.startswith(b"\x89PNG") and len(image) > 5_000
    with pytest.raises(PreviewUnavailable):
        render_pdf_page(b"%PDF-1.7 not really a PDF", 1)


def test_text_is_shown_as_text_and_binary_by_digest_only() -> None:
    text = (SAMPLES / "meeting-minutes.txt").read_bytes()
    assert preview_of(text).kind == "text" and preview_of(text).text == text.decode()
    long = preview_of(b"a" * (70 * 1024))
    assert long.kind == "text" and long.truncated and len(long.text) == 64 * 1024
    assert preview_of(b"\x00\x01binary").kind == "binary"
    assert preview_of("ø".encode() * 40_000).kind == "text"  # a cut multi-byte character is not binary
