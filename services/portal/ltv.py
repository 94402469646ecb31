"""Time-stamps and validation data shared by the three formats (levels B-T, B-LT, B-LTA).

:class:`ValidationMaterial` is what the portal gathers at step 10 to make a signature long-term
verifiable: certificates (from the signDoc ``validationInfo`` and the TSP), CRLs and OCSP
responses. :func:`validation_context` turns it into a pyHanko/certvalidator context that trusts
only the configured SignLab root and never fetches (the material is complete or the level fails).
Importing it routes pyHanko's own reads of the clock to the lab clock (:mod:`shared.clock`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from typing import Any

from asn1crypto import cms, core, crl, ocsp, x509
from pyhanko.sign.attributes import TSTProvider
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator import ValidationContext

from shared.asn1_fixes import fix_indefinite_length_check
from shared.clock import route_library_clocks

# pyHanko reads "now" itself in places no argument reaches: route it to the lab clock (and to the
# time a validation pins), once, before any signing or validation in this process.
route_library_clocks()
# asn1crypto re-encodes whole CMS structures whose length happens to end in 0x80 (shared.asn1_fixes).
fix_indefinite_length_check()

__all__ = ["ValidationMaterial", "add_signature_timestamp", "load_certificate", "prime_certificate", "replace_fields", "shared_certificate",
           "shared_crl", "validation_context"]


def load_certificate(data: bytes) -> x509.Certificate:
    """An asn1crypto certificate from DER or PEM bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        from asn1crypto import pem

        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


@dataclass
class ValidationMaterial:
    """Certificates and revocation data (DER) for the B-LT level and for validation.

    :ivar certificates: signer chain, TSA chain (any order, duplicates removed on use).
    :ivar crls: DER CRLs.
    :ivar ocsps: DER OCSP responses.
    """

    certificates: list[bytes] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)
    ocsps: list[bytes] = field(default_factory=list)

    def extend(self, other: ValidationMaterial) -> None:
        """Add everything from ``other`` that is not there yet."""
        for mine, theirs in ((self.certificates, other.certificates), (self.crls, other.crls), (self.ocsps, other.ocsps)):
            for item in theirs:
                if item not in mine:
                    mine.append(item)

    def asn1_certificates(self) -> list[x509.Certificate]:
        """The certificates as asn1crypto objects."""
        return [load_certificate(c) for c in _unique(self.certificates)]

    def asn1_crls(self) -> list[crl.CertificateList]:
        """The CRLs as asn1crypto objects."""
        return [crl.CertificateList.load(c) for c in _unique(self.crls)]

    def asn1_ocsps(self) -> list[ocsp.OCSPResponse]:
        """The OCSP responses as asn1crypto objects."""
        return [ocsp.OCSPResponse.load(o) for o in _unique(self.ocsps)]


def prime_certificate(cert: x509.Certificate) -> x509.Certificate:
    """Parse everything of ``cert`` that asn1crypto would parse lazily, now, in this thread.

    asn1crypto parses fields and prepares name strings on first access and keeps the result on the
    object. Two threads doing that first access on one shared object at the same time can see it
    half-built (concurrent first validations on a cold portal failed with a ``KeyError`` in name
    matching). A certificate shared between threads is primed once, before it is shared.
    """
    cert.native  # every field, recursively
    for name in (cert.subject, cert.issuer):
        name.hashable, name.human_friendly, name.sha256  # noqa: B018 - computed and cached on the object
    cert.sha256, cert.sha1, cert.issuer_serial, cert.key_identifier, cert.authority_key_identifier  # noqa: B018
    cert.public_key.native, cert.self_signed, cert.not_valid_before, cert.not_valid_after  # noqa: B018
    return cert


@lru_cache(maxsize=256)
def shared_certificate(der: bytes) -> x509.Certificate:
    """A parsed, primed certificate shared between validations and threads (only ever read).

    The CA, TSA and root certificates recur in every validation; asn1crypto keeps the prepared
    name strings on the parsed object, and matching names was a tenth of the portal's CPU.
    """
    return prime_certificate(load_certificate(der))


@lru_cache(maxsize=32)
def shared_crl(der: bytes) -> crl.CertificateList:
    """A parsed, primed CRL shared between validations and threads (only ever read); see
    :func:`shared_certificate`."""
    parsed = crl.CertificateList.load(der)
    parsed.native  # noqa: B018 - parse every entry now, before other threads see it
    parsed.issuer.hashable, parsed.issuer.human_friendly  # noqa: B018
    return parsed


def _unique(items: Iterable[bytes]) -> list[bytes]:
    seen: dict[bytes, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def validation_context(
    root: x509.Certificate,
    material: ValidationMaterial | None = None,
    *,
    moment: datetime | None = None,
    revocation_mode: str = "hard-fail",
    retroactive_revinfo: bool = False,
) -> ValidationContext:
    """A context that trusts exactly ``root`` and uses only ``material`` (no network fetching).

    :param revocation_mode: pyhanko-certvalidator mode: ``soft-fail``, ``hard-fail`` or ``require``.
    :param moment: validate as of this time (POE of a time-stamp) instead of now.
    """
    material = material or ValidationMaterial()
    return ValidationContext(
        trust_roots=[root],
        other_certs=[shared_certificate(c) for c in _unique(material.certificates)],
        crls=[shared_crl(c) for c in _unique(material.crls)],
        ocsps=material.asn1_ocsps(),
        allow_fetching=False,
        revocation_mode=revocation_mode,
        moment=moment,
        retroactive_revinfo=retroactive_revinfo,
    )


async def add_signature_timestamp(content_info: cms.ContentInfo, timestamper: TimeStamper) -> cms.ContentInfo:
    """Return a copy of a CMS ``SignedData`` whose first SignerInfo carries a signature time-stamp.

    The time-stamp (RFC 3161, from the TSA) covers the signature value, as CAdES/PAdES B-T
    require, and goes into the unsigned attributes (``signature_time_stamp_token``) — pyHanko's own
    :class:`~pyhanko.sign.attributes.TSTProvider` builds it. The signed attributes are untouched,
    so the signature stays valid.
    """
    signed_data = content_info["content"]
    signer_infos = list(signed_data["signer_infos"])
    signer_info = signer_infos[0]
    attribute = await TSTProvider("sha256", signer_info["signature"].native, timestamper).get_attribute()
    existing = list(signer_info["unsigned_attrs"]) if signer_info["unsigned_attrs"].native else []
    new_signer_info = replace_fields(signer_info, unsigned_attrs=cms.CMSAttributes([*existing, attribute]))
    new_signed_data = replace_fields(signed_data, signer_infos=cms.SignerInfos([new_signer_info, *signer_infos[1:]]))
    return cms.ContentInfo.load(cms.ContentInfo({"content_type": "signed_data", "content": new_signed_data}).dump())


def replace_fields(value: Any, **changes: Any) -> Any:
    """A new asn1crypto Sequence of the same type with some fields replaced.

    Untouched fields keep their original encoding (re-encoding a whole CMS with
    ``dump(force=True)`` is slow and could change the signed attributes' bytes).
    """
    fields = {}
    for name, _spec, *_rest in value._fields:
        if name in changes:
            fields[name] = changes[name]
        elif not isinstance(value[name], core.Void):
            fields[name] = value[name]
    return type(value)(fields)
