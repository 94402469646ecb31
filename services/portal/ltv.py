"""Time-stamps and validation data shared by the three formats (levels B-T, B-LT, B-LTA).

:class:`ValidationMaterial` is what the portal gathers at step 10 to make a signature long-term
verifiable: certificates (from the signDoc ``validationInfo`` and the TSP), CRLs and OCSP
responses. :func:`validation_context` turns it into a pyHanko/certvalidator context that trusts
only the configured SignLab root and never fetches (the material is complete or the level fails).
Importing it routes pyHanko's own reads of the clock to the lab clock (:mod:`shared.clock`) and
corrects asn1crypto's indefinite-length test (:mod:`shared.asn1_fixes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from typing import Any, TypeVar

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

__all__ = ["ValidationMaterial", "add_signature_timestamp", "fully_parsed", "load_certificate", "read_only_certificate",
           "read_only_crl", "replace_fields", "validation_context"]

_Shared = TypeVar("_Shared", x509.Certificate, crl.CertificateList)


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


@lru_cache(maxsize=256)
def read_only_certificate(der: bytes) -> x509.Certificate:
    """A parsed certificate shared between validations (only ever read, never embedded).

    The CA, TSA and root certificates recur in every validation; asn1crypto keeps the prepared
    name strings on the parsed object, and matching names was a tenth of the portal's CPU.
    """
    return fully_parsed(load_certificate(der))


@lru_cache(maxsize=32)
def read_only_crl(der: bytes) -> crl.CertificateList:
    """A parsed CRL shared between validations (only ever read); see :func:`read_only_certificate`."""
    return fully_parsed(crl.CertificateList.load(der))


def fully_parsed(value: _Shared) -> _Shared:
    """``value`` with every nested structure parsed, before other threads may read it.

    asn1crypto parses lazily and not atomically: a sequence's child list exists, still empty,
    while the first reader fills it, and a second thread reading then gets "No field numbered N"
    (a KeyError that failed concurrent validations on a cold portal). ``.native`` parses the whole
    tree; the names' prepared forms, which validation compares, are computed too.
    """
    value.native  # noqa: B018 - parses every child, which is the point
    if isinstance(value, x509.Certificate):
        value.subject.hashable  # noqa: B018
        value.issuer.hashable  # noqa: B018
    else:
        value["tbs_cert_list"]["issuer"].hashable  # noqa: B018
    return value


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
        other_certs=[read_only_certificate(c) for c in _unique(material.certificates)],
        crls=[read_only_crl(c) for c in _unique(material.crls)],
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
