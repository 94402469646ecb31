"""Documents and signing options as the portal accepts them (flow step 1), with the input checks.

A document is rejected here, before anything is prepared or sent, when it is empty, too large, not
what its format needs (a PDF for PAdES, JSON for JAdES), encrypted or damaged. A PDF that already
carries signatures is accepted: the new signature goes into a new incremental revision, so the old
ones stay valid.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from typing import ClassVar

from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader

from services.portal.errors import DocumentRejected, UnsupportedOption

__all__ = [
    "Document",
    "Flow",
    "Level",
    "Qualifier",
    "SignatureFormat",
    "SigningOptions",
    "check_document",
    "safe_label",
]


class SignatureFormat(StrEnum):
    """Signature formats; the value is the CSC ``signature_format`` letter's long name."""

    PADES = "pades"
    CADES = "cades"
    JADES = "jades"

    @property
    def csc_letter(self) -> str:
        """CSC v2 ``signature_format``: P, C or J."""
        return {"pades": "P", "cades": "C", "jades": "J"}[self.value]

    @property
    def display_name(self) -> str:
        """Human name."""
        return {"pades": "PAdES (PDF)", "cades": "CAdES detached (.p7s)", "jades": "JAdES (JSON, detached)"}[self.value]


class Level(StrEnum):
    """ETSI baseline levels."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def rank(self) -> int:
        """0 for B-B … 3 for B-LTA."""
        return ["B-B", "B-T", "B-LT", "B-LTA"].index(self.value)

    @property
    def csc_conformance_level(self) -> str:
        """CSC v2 ``conformance_level`` (``AdES-B-B`` …)."""
        return f"AdES-{self.value}"


class Qualifier(StrEnum):
    """What the partner asks for: a qualified or an advanced electronic signature."""

    QES = "qes"
    ADES = "ades"

    @property
    def csc_qualifier(self) -> str:
        """CSC ``signatureQualifier``."""
        return "eu_eidas_qes" if self is Qualifier.QES else "eu_eidas_aes"

    @property
    def display_name(self) -> str:
        """``QES`` or ``AdES``."""
        return "QES" if self is Qualifier.QES else "AdES"


class Flow(StrEnum):
    """The two flows of docs/design.md §2."""

    PERSON_SIGNING = "person-signing"
    CERTIFICATE_FIRST = "certificate-first"


@dataclass(frozen=True)
class SigningOptions:
    """What the signer chose at step 1.

    :ivar qualifier: QES or AdES.
    :ivar format: PAdES, CAdES or JAdES.
    :ivar level: B-B … B-LTA.
    :ivar flow: person signing (signDoc) or certificate first (signHash).
    :ivar visible: draw a visible signature box (PAdES only).
    :ivar signer_name: the name shown in a visible signature (the certificate is not known yet in
        the person-signing flow, so the portal shows what it was told).
    :ivar login_hint: passed unchanged to the SSASP in the PAR (headless eID login in scenarios).
    """

    VISIBLE_FORMATS: ClassVar[tuple[str, ...]] = ("pades",)
    """The formats with a visible signature appearance (the form disables the box for the others)."""
    NAMED_FLOWS: ClassVar[tuple[str, ...]] = ("person-signing",)
    """The flows in which the typed name is shown (certificate first shows the certificate's)."""

    qualifier: Qualifier = Qualifier.QES
    format: SignatureFormat = SignatureFormat.PADES
    level: Level = Level.B_B
    flow: Flow = Flow.PERSON_SIGNING
    visible: bool = False
    signer_name: str = ""
    login_hint: str | None = None

    @classmethod
    def parse(cls, raw: dict[str, object]) -> SigningOptions:
        """Build from form or JSON fields; unknown values raise :class:`UnsupportedOption`."""

        def pick(enum: type[StrEnum], key: str, default: StrEnum) -> StrEnum:
            value = raw.get(key)
            if value in (None, ""):
                return default
            try:
                return enum(str(value).strip())
            except ValueError:
                allowed = ", ".join(e.value for e in enum)
                raise UnsupportedOption(f"{key} {str(value)[:40]!r} is not one of: {allowed}") from None

        visible = raw.get("visible")
        name = str(raw.get("signer_name") or "").strip()
        if len(name) > 80 or any(ord(c) < 32 for c in name):
            raise UnsupportedOption("signer_name must be at most 80 printable characters")
        hint = raw.get("login_hint")
        if hint is not None and (not isinstance(hint, str) or len(hint) > 200):
            raise UnsupportedOption("login_hint must be a string of at most 200 characters")
        options = cls(
            qualifier=pick(Qualifier, "qualifier", Qualifier.QES),  # type: ignore[arg-type]
            format=pick(SignatureFormat, "format", SignatureFormat.PADES),  # type: ignore[arg-type]
            level=pick(Level, "level", Level.B_B),  # type: ignore[arg-type]
            flow=pick(Flow, "flow", Flow.PERSON_SIGNING),  # type: ignore[arg-type]
            visible=visible in (True, "on", "true", "1", "yes"),
            signer_name=name,
            login_hint=hint or None,
        )
        if options.visible and options.format.value not in cls.VISIBLE_FORMATS:
            raise UnsupportedOption("a visible signature appearance exists only for PAdES (PDF)")
        return options


@dataclass(frozen=True)
class Document:
    """One document as uploaded (the portal keeps it; only its digest leaves).

    :ivar label: a safe file name shown to people and sent as the digest label.
    :ivar content: the bytes.
    :ivar media_type: ``application/pdf``, ``application/json`` or ``application/octet-stream``.
    """

    label: str
    content: bytes
    media_type: str


_LABEL_OK = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_label(name: str | None, default: str = "document") -> str:
    """A file name without paths or odd characters (it travels in headers and the PAR)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    cleaned = _LABEL_OK.sub("_", base).strip(" .")[:100]
    return cleaned or default


def check_document(label: str, content: bytes, fmt: SignatureFormat, *, max_bytes: int) -> Document:
    """Check one upload against the chosen format; return it as a :class:`Document`.

    :raises DocumentRejected: empty, too large (413), not a PDF / not JSON, encrypted or damaged PDF.
    """
    label = safe_label(label)
    if not content:
        raise DocumentRejected(label, "the file is empty (0 bytes)")
    if len(content) > max_bytes:
        raise DocumentRejected(
            label, f"the file has {len(content)} bytes, more than the limit of {max_bytes} bytes", status=413
        )
    if fmt is SignatureFormat.PADES:
        inspect_pdf(label, content)
        return Document(label, content, "application/pdf")
    if fmt is SignatureFormat.JADES:
        try:
            json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise DocumentRejected(label, "JAdES here signs JSON payloads, and this file is not valid UTF-8 JSON") from None
        return Document(label, content, "application/json")
    return Document(label, content, "application/octet-stream")


def inspect_pdf(label: str, content: bytes) -> PdfFileReader:
    """Parse a PDF strictly enough to sign it; return the reader.

    :raises DocumentRejected: not a PDF, damaged, or encrypted.
    """
    if not content.lstrip()[:5] == b"%PDF-":
        raise DocumentRejected(label, "this is not a PDF (it does not start with %PDF-); PAdES needs a PDF")
    try:
        reader = PdfFileReader(BytesIO(content), strict=True)
        if reader.encrypted:
            raise DocumentRejected(
                label, "the PDF is encrypted (password-protected); remove the protection and upload it again"
            )
        # Touch the structures signing needs, so a damaged file fails here and not at step 10.
        reader.root["/Pages"]
        _ = reader.embedded_signatures
    except DocumentRejected:
        raise
    except (PdfError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise DocumentRejected(label, f"the PDF is damaged and cannot be read ({exc.__class__.__name__})") from None
    return reader
