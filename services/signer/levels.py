"""What ``signDoc`` produces for each signature format, envelope and conformance level, and the
CMS changes that raise a signature object above B-B (step 10).

The SSASP never holds a document, only its digest; what it can honour follows from that:

======  ==================  =============================  ==========================================
format  envelope            levels produced                not produced (refused, 400 invalid_request)
======  ==================  =============================  ==========================================
``C``   Detached            Ades-B-B, Ades-B-T, Ades-B-LT  Attached / Parallel (no content here);
                                                           Ades-B-LTA (the archive time-stamp is the
                                                           partner's)
``P``   Certification,      Ades-B-B, Ades-B-T             Ades-B-LT / B-LTA (their validation data
        Revision                                           and document time-stamp belong in the
                                                           PDF's DSS, which this service never sees)
``J``   Detached            Ades-B-B                       Ades-B-T and up (the compact JWS has no
                                                           unprotected header for ``etsiU``)
======  ==================  =============================  ==========================================

* **B-T** (CAdES and PAdES): a signature time-stamp from the TSP's TSA over the SignerInfo's
  signature value (RFC 3161 message imprint = SHA-256 of the signature octets), as the unsigned
  attribute ``id-aa-signatureTimeStampToken`` (ETSI EN 319 122-1 §5.3; PAdES takes the same
  attribute, EN 319 142-1 §5.3).
* **B-LT** (CAdES): B-T, plus every certificate (the chain, the TSA's) in
  ``SignedData.certificates`` and the CRLs of the issuing and root CA and an OCSP response for the
  signer's certificate in ``SignedData.crls`` (OCSP as ``otherRevocationInfoFormat``
  ``id-ri-ocsp-response``), EN 319 122-1 §6.3 B-LT; the SignedData version follows RFC 5652 §5.1
  (:mod:`shared.cms_version`, 5 with an OCSP response).

The PAdES ``envelope`` values are both accepted because the CMS is the same for either: whether it
becomes a certification or an approval signature is set in the PDF the partner prepared. The
spec's default envelope of ``C`` and ``J`` (``Attached``) needs the document; with digests only, an
omitted envelope means ``Detached`` (the only one these objects can be).

The extended levels (``Ades-B``, ``Ades-T``, ``Ades-LT``, ``Ades-LTA``) are not produced: refused.
"""

from __future__ import annotations

import hashlib
from typing import Any

from asn1crypto import cms, crl, ocsp, tsp, x509

from shared.cms_version import signed_data_version
from shared.errors import InvalidRequest, UpstreamError
from shared.flow import FlowStep, Role

__all__ = [
    "ADVERTISED_LEVELS",
    "ENVELOPES",
    "LEVEL_NAMES",
    "PRODUCED",
    "check_produced",
    "signature_value_digest",
    "time_stamp_query",
    "time_stamp_token",
    "with_signature_timestamp",
    "with_validation_data",
]

LEVEL_NAMES = {"ades-b-b": "Ades-B-B", "ades-b-t": "Ades-B-T", "ades-b-lt": "Ades-B-LT", "ades-b-lta": "Ades-B-LTA",
               "ades-b": "Ades-B", "ades-t": "Ades-T", "ades-lt": "Ades-LT", "ades-lta": "Ades-LTA"}
"""Every CSC v2 ``conformance_level`` value (lower-cased: the spec's samples spell it both ways)."""
PRODUCED: dict[str, tuple[str, ...]] = {"C": ("ades-b-b", "ades-b-t", "ades-b-lt"),
                                        "P": ("ades-b-b", "ades-b-t"),
                                        "J": ("ades-b-b",)}
"""The conformance levels made for each ``signature_format``."""
ENVELOPES: dict[str, tuple[str, ...]] = {"C": ("Detached",), "P": ("Certification", "Revision"), "J": ("Detached",)}
"""The ``signed_envelope_property`` values each format honours (the first is what an omitted one means)."""
ADVERTISED_LEVELS = [LEVEL_NAMES[level] for level in LEVEL_NAMES if any(level in made for made in PRODUCED.values())]
"""``info``'s ``conformance_levels``: those produced for at least one format."""

_WHY_NOT = {
    ("C", "ades-b-lta"): "the archive time-stamp of CAdES B-LTA is added by the partner, which holds the document",
    ("P", "ades-b-lt"): "PAdES validation data goes into the PDF's DSS, which this service never sees (it signs "
                        "digests): ask for Ades-B-T and add the DSS",
    ("P", "ades-b-lta"): "PAdES validation data and the document time-stamp go into the PDF, which this service "
                         "never sees (it signs digests): ask for Ades-B-T and add them",
}


def check_produced(signature_format: str, level: str, envelope: str | None, *, step: FlowStep) -> str:
    """Refuse a format/level/envelope this service does not produce; the envelope it will make.

    :raises InvalidRequest: an unknown or unproduced ``conformance_level`` or ``signed_envelope_property``,
        named with what is produced instead (nothing is downgraded).
    """
    if level not in LEVEL_NAMES:
        raise InvalidRequest(f"Invalid parameter conformance_level: unknown value {level[:20]!r}", step=step)
    if level not in PRODUCED[signature_format]:
        why = _WHY_NOT.get((signature_format, level))
        if why is None and signature_format == "J":
            why = "the compact JWS returned has no unprotected header for the signature time-stamp"
        made = ", ".join(LEVEL_NAMES[lv] for lv in PRODUCED[signature_format])
        raise InvalidRequest(f"Invalid parameter conformance_level: {LEVEL_NAMES[level]} is not produced for "
                             f"signature_format {signature_format} ({why or 'only baseline levels are made'}); "
                             f"produced: {made}", step=step)
    allowed = ENVELOPES[signature_format]
    if envelope is not None and envelope not in allowed:
        raise InvalidRequest(f"Invalid parameter signed_envelope_property: {envelope[:20]!r} is not produced for "
                             f"signature_format {signature_format} (this service signs digests, never documents); "
                             f"produced: {', '.join(allowed)}", step=step)
    return envelope or allowed[0]


def time_stamp_query(digest: bytes, algorithm: str, nonce: int | None = None) -> bytes:
    """A DER RFC 3161 ``TimeStampReq`` for ``digest`` asking for the TSA's certificate."""
    imprint = {"hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest}
    query: dict[str, Any] = {"version": "v1", "message_imprint": imprint, "cert_req": True}
    if nonce is not None:
        query["nonce"] = nonce
    return bytes(tsp.TimeStampReq(query).dump())


def time_stamp_token(answer_der: bytes, *, step: FlowStep) -> cms.ContentInfo:
    """The token of a TSA's DER ``TimeStampResp``.

    :raises UpstreamError: the TSA did not grant it (``tsa_refused``, its status words).
    """
    answer = tsp.TimeStampResp.load(answer_der)
    if answer["status"]["status"].native not in ("granted", "granted_with_mods"):
        raise UpstreamError(Role.TSP, "tsa_refused", str(answer["status"]["status_string"].native), 200, step=step)
    return answer["time_stamp_token"]


def signature_value_digest(cms_der: bytes) -> bytes:
    """SHA-256 of the first SignerInfo's signature octets: the imprint of its signature time-stamp."""
    return hashlib.sha256(cms.ContentInfo.load(cms_der)["content"]["signer_infos"][0]["signature"].native).digest()


def _replaced(value: Any, **changes: Any) -> Any:
    """A copy of an asn1crypto ``Sequence`` with some fields replaced; the others keep their bytes
    (the signed attributes above all: re-encoding them could break the signature)."""
    fields = {name: value[name] for name, _spec, *_ in value._fields if name not in changes and value[name].native is not None}
    return type(value)({**fields, **changes})


def with_signature_timestamp(cms_der: bytes, token: cms.ContentInfo) -> bytes:
    """``cms_der`` with ``token`` as the first SignerInfo's signature-time-stamp attribute (B-T)."""
    content_info = cms.ContentInfo.load(cms_der)
    signed_data = content_info["content"]
    signer_info = signed_data["signer_infos"][0]
    present = list(signer_info["unsigned_attrs"]) if signer_info["unsigned_attrs"].native else []
    stamp = cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]})
    signer_info = _replaced(signer_info, unsigned_attrs=cms.CMSAttributes([*present, stamp]))
    signed_data = _replaced(signed_data, signer_infos=cms.SignerInfos([signer_info]))
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def with_validation_data(cms_der: bytes, certificates: list[x509.Certificate], crls: list[bytes],
                         ocsp_responses: list[bytes]) -> bytes:
    """``cms_der`` with every certificate (its own, its time-stamp's, ``certificates``) and the
    revocation data in its SignedData (CAdES B-LT), the version set by RFC 5652 §5.1."""
    signed_data = cms.ContentInfo.load(cms_der)["content"]
    chosen = [c.chosen for c in signed_data["certificates"]] if signed_data["certificates"].native else []
    for attribute in signed_data["signer_infos"][0]["unsigned_attrs"] or []:
        if attribute["type"].native == "signature_time_stamp_token":
            for token in attribute["values"]:
                chosen += [c.chosen for c in token["content"]["certificates"]]
    unique: dict[bytes, x509.Certificate] = {}
    for certificate in [*chosen, *certificates]:
        unique.setdefault(certificate.dump(), certificate)
    revocation = [cms.RevocationInfoChoice(name="crl", value=crl.CertificateList.load(c)) for c in crls]
    revocation += [cms.RevocationInfoChoice(name="other", value=cms.OtherRevocationInfoFormat({
        "other_rev_info_format": "ocsp_response", "other_rev_info": ocsp.OCSPResponse.load(r)}))
        for r in ocsp_responses]
    signed_data = _replaced(signed_data, certificates=cms.CertificateSet(
        [cms.CertificateChoices(name="certificate", value=c) for c in unique.values()]),
        crls=cms.RevocationInfoChoices(revocation))
    signed_data["version"] = signed_data_version(signed_data)  # 5 with an OCSP response (RFC 5652 §5.1)
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())
