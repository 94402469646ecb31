"""What you see is what you sign: how the portal shows a document before the signer confirms.

Before the browser is sent to the SSASP, the portal's review page shows each document with the
digest that will be signed (:func:`shared.digests.digest_fingerprint`). The preview is made here,
on the portal's own machine, from the bytes that are signed:

* a PDF is rendered page by page to PNG by poppler's ``pdftoppm`` (Debian package poppler-utils;
  a separate process with a time limit, so a hostile PDF cannot hang or crash the portal). For
  PAdES the rendered file is the *prepared* PDF — the revision whose /ByteRange digest is signed,
  with its signature field — not the upload;
* a small UTF-8 text or JSON file is shown as text;
* anything else (a binary file signed with CAdES) is shown by name, size and digest only.

Limits: at most :data:`MAX_PREVIEW_PAGES` pages are rendered (the page says how many more the
document has); text over :data:`MAX_TEXT_BYTES` is shown up to that size with a note.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from io import BytesIO

from pyhanko.pdf_utils.reader import PdfFileReader

__all__ = ["MAX_PREVIEW_PAGES", "MAX_TEXT_BYTES", "Preview", "PreviewUnavailable", "preview_of", "render_pdf_page"]

MAX_PREVIEW_PAGES = 20
MAX_TEXT_BYTES = 64 * 1024
RENDER_WIDTH = 900
"""Pixels of a rendered page's longer side (readable on a laptop screen, a few hundred kB)."""
RENDER_TIMEOUT_SECONDS = 20


class PreviewUnavailable(Exception):
    """The page cannot be rendered (the renderer is missing, timed out or failed)."""


@dataclass(frozen=True)
class Preview:
    """How one document is shown on the review page.

    :ivar kind: ``pdf``, ``text`` or ``binary``.
    :ivar pages: pages rendered (PDF), at most :data:`MAX_PREVIEW_PAGES`.
    :ivar total_pages: pages the PDF has.
    :ivar text: the text shown (text files), possibly cut.
    :ivar truncated: the text was cut at :data:`MAX_TEXT_BYTES`.
    """

    kind: str
    pages: int = 0
    total_pages: int = 0
    text: str = ""
    truncated: bool = False


def preview_of(content: bytes) -> Preview:
    """Decide how ``content`` is shown (nothing is rendered yet: pages are rendered on request)."""
    if content.lstrip()[:5] == b"%PDF-":
        total = _page_count(content)
        return Preview("pdf", pages=min(total, MAX_PREVIEW_PAGES), total_pages=total)
    head = content[:MAX_TEXT_BYTES]
    if b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if len(content) <= MAX_TEXT_BYTES or exc.start < len(head) - 4:  # not just a cut multi-byte character
                return Preview("binary")
            text = head[:exc.start].decode("utf-8")
        return Preview("text", text=text, truncated=len(content) > MAX_TEXT_BYTES)
    return Preview("binary")


def _page_count(pdf: bytes) -> int:
    try:
        return int(PdfFileReader(BytesIO(pdf), strict=False).root["/Pages"]["/Count"])
    except Exception:  # a PDF the renderer may still show: count none rather than refuse the review
        return 0


def render_pdf_page(pdf: bytes, page: int) -> bytes:
    """Page ``page`` (1-based) of ``pdf`` as PNG, rendered by ``pdftoppm``.

    :raises PreviewUnavailable: poppler-utils is not installed, or the renderer failed or took
        longer than the time limit.
    """
    command = ["pdftoppm", "-png", "-f", str(page), "-l", str(page), "-singlefile", "-scale-to", str(RENDER_WIDTH),
               "fd://0"]
    try:
        done = subprocess.run(command, input=pdf, capture_output=True, timeout=RENDER_TIMEOUT_SECONDS, check=False)
    except FileNotFoundError:
        raise PreviewUnavailable("pdftoppm is not installed (Debian package poppler-utils)") from None
    except subprocess.TimeoutExpired:
        raise PreviewUnavailable(f"rendering page {page} took longer than {RENDER_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0 or not done.stdout.startswith(b"\x89PNG"):
        raise PreviewUnavailable(f"page {page} could not be rendered ({done.stderr.decode(errors='replace')[:200]})")
    return done.stdout
