"""PAdES with pyHanko: prepare without a certificate, embed the returned CMS, raise the level.

Person-signing flow (docs/design.md steps 2 and 10):

* :func:`prepare_pdf` adds a signature field in a new incremental revision, reserves
  ``bytes_reserved`` hex characters for the CMS and returns the /ByteRange digest (the DTBS/R sent
  to the SSASP) plus the prepared bytes and the reserved region — all that must be kept until the
  signature comes back. The signer's certificate is not known at this point, so pyHanko's
  ``ExternalSigner(signing_cert=None)`` is used; the visible stamp shows the name given at step 1
  and the signature dictionary carries no ``/Name`` (the certificate names the signer).
* :func:`finish_pdf` writes the CMS into the reserved region (``PdfTBSDocument.async_finish_signing``).
* :func:`augment_pdf` raises B-B to B-T (signature time-stamp in the CMS *before* embedding),
  B-LT (DSS with certificates, CRLs, OCSP — pyHanko's ``async_add_validation_info``) and B-LTA
  (document time-stamp — pyHanko's ``PdfTimeStamper``).

Limits: one signature per call; the CMS must fit the reservation (checked, with a clear error).
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import cast

from asn1crypto import cms, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import SigFieldSpec
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument, PdfTimeStamper
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
from pyhanko.stamp import TextStampStyle

from services.portal.documents import Level, Qualifier, inspect_pdf
from services.portal.errors import PackagingFailed, TimeStampingFailed
from services.portal.ltv import ValidationMaterial, add_signature_timestamp, validation_context

__all__ = ["PreparedPdf", "augment_pdf", "finish_pdf", "prepare_pdf", "next_field_name"]


@dataclass(frozen=True)
class PreparedPdf:
    """A PDF prepared for an external signature (persist all of it until step 10).

    :ivar prepared: the prepared PDF bytes (NOT the original upload).
    :ivar digest: SHA-256 over the /ByteRange: the DTBS/R sent to the SSASP.
    :ivar reserved_start: start offset of the /Contents placeholder.
    :ivar reserved_end: end offset of the /Contents placeholder.
    :ivar field_name: the new signature field.
    """

    prepared: bytes
    digest: bytes
    reserved_start: int
    reserved_end: int
    field_name: str


def next_field_name(reader: PdfFileReader) -> str:
    """``Signature<n>`` not yet used in the document (so earlier signatures stay untouched)."""
    used = {name for name, _, _ in fields.enumerate_sig_fields(reader)}
    n = 1
    while f"Signature{n}" in used:
        n += 1
    return f"Signature{n}"


def _stamp_box(reader: PdfFileReader, index: int) -> tuple[int, int, int, int]:
    """A box at the bottom of the first page, shifted up for each earlier signature."""
    page = reader.root["/Pages"]["/Kids"][0].get_object()
    media = [float(v) for v in page.get("/MediaBox", [0, 0, 595, 842])]
    x1 = int(media[0]) + 36
    y1 = int(media[1]) + 36 + 80 * index
    return (x1, y1, x1 + 260, y1 + 70)


def contents_reservation(level: Level, configured: int) -> int:
    """Hex characters to reserve in /Contents for a signature at ``level``.

    B-B holds the certificate chain and the signature (about 3 kB DER here); from B-T on the CMS
    also carries the signature time-stamp token, roughly doubling it. ``configured``
    (``SIGNLAB_PORTAL_PDF_BYTES_RESERVED``) is the reservation for the time-stamped levels and B-B
    gets half of it: every validator reads the reserved hex string character by character, so an
    oversized reservation costs every later reader time (it was a third of the portal's CPU).
    """
    if level is Level.B_B:
        return max(8192, (configured // 4) * 2)
    return configured


async def prepare_pdf(
    pdf: bytes,
    *,
    label: str,
    qualifier: Qualifier,
    visible: bool,
    signer_name: str,
    bytes_reserved: int,
    reason: str = "Signed through SignLab (simulation)",
    location: str = "SignLab Demo Partner",
    external: signers.ExternalSigner | None = None,
) -> PreparedPdf:
    """Prepare ``pdf`` for an external signature; return what to keep.

    Person signing: the certificate is not known yet (``external`` is ``None``), so pyHanko runs
    with ``ExternalSigner(signing_cert=None)`` and the stamp shows ``signer_name``. Certificate
    first: ``external`` carries the real one-time certificate (its signature value is a
    placeholder), the stamp shows the certificate's name and the caller builds the signed
    attributes over the returned digest (CSC v1 `signHash`: the client owns the signed data).

    The signature dictionary's ``/Name`` is the signer's name from the certificate (its common
    name) when the certificate is known (certificate first). In person signing it is left out:
    ISO 32000-2 §12.8.1 (Table 255) keeps ``/Name`` for when the name cannot be taken from the
    signer's certificate, and the certificate made at step 7 names the signer; a name typed at
    step 1 was never verified and must not be signed as the signer's.

    :param signer_name: shown in the visible stamp in person signing (not written as ``/Name``).
    :param bytes_reserved: hex characters reserved for the CMS (even).
    """
    reader = inspect_pdf(label, pdf)
    field_name = next_field_name(reader)
    certificate_name = external.subject_name if external is not None else None
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
        name=certificate_name,
    )
    stamp_name = certificate_name or signer_name or "the eID-authenticated signer"
    if external is None:
        external = signers.ExternalSigner(signing_cert=None, cert_registry=None, signature_value=bytes(256))
    if visible:
        index = int(field_name.removeprefix("Signature")) - 1
        pdf_signer = signers.PdfSigner(
            meta,
            signer=external,
            new_field_spec=SigFieldSpec(field_name, box=_stamp_box(reader, index)),
            stamp_style=TextStampStyle(
                stamp_text=f"Signed by: %(signer)s\nDate: %(ts)s\n{qualifier.display_name} · SignLab (simulation)",
                border_width=1,
            ),
        )
    else:
        pdf_signer = signers.PdfSigner(meta, signer=external)
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    prep, _tbs, output = await pdf_signer.async_digest_doc_for_signing(
        writer, bytes_reserved=bytes_reserved, appearance_text_params={"signer": stamp_name})
    return PreparedPdf(
        prepared=cast(BytesIO, output).getvalue(),  # pyHanko writes to a new BytesIO when given no output
        digest=prep.document_digest,
        reserved_start=prep.reserved_region_start,
        reserved_end=prep.reserved_region_end,
        field_name=field_name,
    )


async def finish_pdf(prepared: PreparedPdf, signature_cms: cms.ContentInfo | bytes) -> bytes:
    """Embed a CMS into the prepared PDF's reserved region; return the signed PDF.

    :raises PackagingFailed: the CMS does not fit the reservation.
    """
    output = BytesIO(prepared.prepared)
    prep = PreparedByteRangeDigest(prepared.digest, prepared.reserved_start, prepared.reserved_end)
    try:
        await PdfTBSDocument.async_finish_signing(output, prep, signature_cms)
    except SigningError as exc:
        raise PackagingFailed(
            f"the signature of {len(_der(signature_cms))} bytes does not fit the {prepared.reserved_end - prepared.reserved_start - 2} "
            f"hex characters reserved in the PDF ({exc}); raise SIGNLAB_PORTAL_PDF_BYTES_RESERVED"
        ) from None
    return output.getvalue()


def _der(value: cms.ContentInfo | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.dump()


async def augment_pdf(
    prepared: PreparedPdf,
    signature_cms: bytes,
    *,
    level: Level,
    timestamper: TimeStamper | None,
    root: x509.Certificate,
    material: ValidationMaterial,
) -> bytes:
    """Embed ``signature_cms`` and raise the signature to ``level``; return the signed PDF.

    * B-T: a signature time-stamp from the TSA goes into the CMS before it is embedded.
    * B-LT: a DSS revision with every certificate, CRL and OCSP response needed to validate the
      signature and its time-stamp, built by pyHanko from ``material`` (validated against ``root``).
    * B-LTA: a document time-stamp over everything, with the TSA's own validation data.

    :raises PackagingFailed: the TSA, the validation data or the embedding failed.
    """
    try:
        content_info = cms.ContentInfo.load(signature_cms)
        _ = content_info["content"]["signer_infos"][0]
    except (ValueError, TypeError, KeyError, IndexError):
        raise PackagingFailed("the signing service returned something that is not a CMS SignedData") from None
    if level.rank >= Level.B_T.rank:
        if timestamper is None:
            raise PackagingFailed(f"{level} needs a time-stamping authority, and none is configured")
        content_info = await _timestamped(content_info, timestamper)
    signed = await finish_pdf(prepared, content_info)
    if level.rank >= Level.B_LT.rank:
        signed = await _add_dss(signed, prepared.field_name, root, material)
    if level is Level.B_LTA:
        if timestamper is None:
            raise PackagingFailed(f"{level} needs a time-stamping authority, and none is configured")
        signed = await _add_document_timestamp(signed, timestamper, root, material)
    return signed


async def _timestamped(content_info: cms.ContentInfo, timestamper: TimeStamper) -> cms.ContentInfo:
    try:
        return await add_signature_timestamp(content_info, timestamper)
    except Exception as exc:  # the TSA client raises several unrelated types (transport, ASN.1, status)
        raise TimeStampingFailed(f"the time-stamping authority did not time-stamp the signature ({exc})") from None


async def _add_dss(pdf: bytes, field_name: str, root: x509.Certificate, material: ValidationMaterial) -> bytes:
    """A DSS revision with the validation data of the signature in ``field_name`` and its VRI entry.

    The VRI key is the upper-case hex SHA-1 of the signature's bytes (the decoded /Contents
    string, padding included; ISO 32000-2 §12.8.4.4, as the document time-stamp's key is made).
    pyHanko's ``async_add_validation_info`` hashes the lower-case hex *text* of /Contents
    instead, so its two steps — collect the paths, write the DSS — are called here directly
    with the bytes.
    """
    reader = PdfFileReader(BytesIO(pdf))
    embedded = next((s for s in reader.embedded_regular_signatures if s.field_name == field_name), None)
    if embedded is None:  # pragma: no cover - we just wrote it
        raise PackagingFailed(f"signature field {field_name} not found after embedding")
    context = validation_context(root, material, revocation_mode="require")
    try:
        paths = await collect_validation_info(embedded, context)
    except Exception as exc:  # path building / revocation errors from certvalidator
        raise PackagingFailed(
            f"B-LT needs complete validation data (certificates, CRL/OCSP for the signer and the TSA), "
            f"and it could not be assembled: {exc}"
        ) from None
    writer = IncrementalPdfFileWriter.from_reader(reader)
    DocumentSecurityStore.supply_dss_in_writer(writer, embedded.pkcs7_content, validation_context=context, paths=paths)
    output = BytesIO()
    writer.write(output)
    return output.getvalue()


async def _add_document_timestamp(
    pdf: bytes, timestamper: TimeStamper, root: x509.Certificate, material: ValidationMaterial
) -> bytes:
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    context = validation_context(root, material, revocation_mode="require")
    try:
        output = await PdfTimeStamper(timestamper).async_timestamp_pdf(writer, "sha256", validation_context=context)
    except Exception as exc:  # TSA transport, path building or revocation
        raise TimeStampingFailed(f"the document time-stamp for B-LTA could not be added: {exc}") from None
    return output.getvalue()
