"""JAdES (ETSI TS 119 182-1) for JSON payloads: detached, with ``sigD``, JSON serialization.

The DTBS/R is the SHA-256 of the payload file (docs/design.md step 2); the SSASP returns a JWS whose
protected header carries ``sigD`` (``mId`` ObjectIdByURIHash, ``pars`` = the label, ``hashM`` S256,
``hashV`` = the base64url digest), ``x5c`` and ``sigT``, with a detached (empty) payload — either
compact (``header..signature``) or flattened JSON. The portal writes the flattened JSON
serialization, the payload stays a separate file, and the levels go into the unprotected
``etsiU`` array, each element the base64url encoding of its JSON object (TS 119 182-1 allows
clear JSON too, but then an archive time-stamp needs a JSON canonicalization; base64url
elements are hashed as they are):

* B-T: ``{"sigTst": {"tstTokens": [{"val": <b64 RFC 3161 token>}]}}``, the time-stamp's message
  imprint being SHA-256 over the ASCII base64url JWS signature value;
* B-LT: ``{"xVals": [{"x509Cert": <b64 DER>}…]}`` and ``{"rVals": {"crlVals": […], "ocspVals": […]}}``;
* B-LTA: ``{"arcTst": {"tstTokens": [{"val": …}]}}`` (TS 119 182-1 §5.3.6, ``timeStamped`` absent,
  i.e. "all"). Its message imprint is SHA-256 over the concatenation of: the base64url-encoded
  payload (the ``sigD`` document), ``.``, the base64url protected header, ``.``, the base64url
  signature value, ``.``, and the ``etsiU`` elements before ``arcTst`` as they appear (base64url
  strings), in order.

The validation report checks the archive time-stamp again with code of its own
(:mod:`services.portal.archive_timestamps`), reading the serialized JSON, not these objects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pyhanko.sign.timestamps import TimeStamper

from services.portal.documents import Level
from services.portal.errors import PackagingFailed, TimeStampingFailed
from services.portal.ltv import ValidationMaterial
from shared.jades import b64url

__all__ = ["JadesSignature", "augment_jades", "b64url_decode", "digest", "parse_jws"]


def digest(content: bytes) -> bytes:
    """The DTBS/R of a JSON payload: SHA-256 of the file bytes (the ``sigD`` ``hashV``)."""
    return hashlib.sha256(content).digest()


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; ``ValueError`` when it is not."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, TypeError) as exc:
        raise ValueError("not base64url") from exc


@dataclass
class JadesSignature:
    """A JAdES signature in flattened JSON form.

    :ivar protected: base64url protected header, exactly as signed.
    :ivar signature: base64url JWS signature value.
    :ivar header: unprotected header (holds ``etsiU``).
    """

    protected: str
    signature: str
    header: dict[str, Any]

    @property
    def protected_header(self) -> dict[str, Any]:
        """The decoded protected header."""
        value = json.loads(b64url_decode(self.protected))
        if not isinstance(value, dict):
            raise ValueError("protected header is not a JSON object")
        return value

    def etsi_u(self) -> list[dict[str, Any]]:
        """The ``etsiU`` items (each decoded if it was base64url-encoded)."""
        items = []
        for item in self.header.get("etsiU", []):
            items.append(json.loads(b64url_decode(item)) if isinstance(item, str) else item)
        return items

    def to_json(self) -> bytes:
        """The flattened JWS JSON serialization (payload detached, so no ``payload`` member)."""
        body: dict[str, Any] = {"protected": self.protected, "signature": self.signature}
        if self.header:
            body["header"] = self.header
        return json.dumps(body, indent=2).encode()


def parse_jws(data: bytes | str) -> JadesSignature:
    """Read a detached JWS: compact ``h..s`` or flattened/general JSON; ``ValueError`` otherwise."""
    text = data.decode("ascii", errors="strict") if isinstance(data, bytes) else data
    text = text.strip()
    if text.startswith("{"):
        obj = json.loads(text)
        if "signatures" in obj:  # general serialization: take the first signature
            obj = {**obj["signatures"][0]}
        if obj.get("payload"):
            raise ValueError("the JWS carries an attached payload; JAdES here is detached")
        sig = JadesSignature(str(obj["protected"]), str(obj["signature"]), dict(obj.get("header") or {}))
    else:
        parts = text.split(".")
        if len(parts) != 3 or parts[1] != "":
            raise ValueError("not a detached compact JWS (header..signature)")
        sig = JadesSignature(parts[0], parts[2], {})
    sig.protected_header  # noqa: B018 - validates the header decodes
    b64url_decode(sig.signature)
    return sig


def _etsi_u_element(item: dict[str, Any]) -> str:
    """One ``etsiU`` element: base64url of the compact JSON of the unsigned component."""
    return b64url(json.dumps(item, separators=(",", ":")).encode("utf-8"))


async def _timestamp(imprint: bytes, timestamper: TimeStamper, what: str) -> str:
    try:
        token = await timestamper.async_timestamp(imprint, "sha256")
    except Exception as exc:  # the TSA client raises several unrelated types
        raise TimeStampingFailed(f"the time-stamping authority did not make the {what} ({exc})") from None
    return base64.b64encode(token.dump()).decode("ascii")


async def augment_jades(
    signature: bytes, *, level: Level, timestamper: TimeStamper | None, material: ValidationMaterial,
    payload: bytes | None = None,
) -> bytes:
    """Package the SSASP's JWS at ``level``; return the JAdES JSON file bytes.

    :param payload: the detached JSON payload (needed for B-LTA's archive time-stamp).
    """
    try:
        jws = parse_jws(signature)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise PackagingFailed(f"the signing service returned something that is not a detached JWS ({exc})") from None
    etsi_u: list[Any] = list(jws.header.get("etsiU", []))
    if level.rank >= Level.B_T.rank:
        if timestamper is None:
            raise PackagingFailed(f"{level} needs a time-stamping authority, and none is configured")
        token = await _timestamp(hashlib.sha256(jws.signature.encode("ascii")).digest(), timestamper,
                                 "signature time-stamp")
        etsi_u.append(_etsi_u_element({"sigTst": {"tstTokens": [{"val": token}]}}))
    if level.rank >= Level.B_LT.rank:
        if not material.crls and not material.ocsps:
            raise PackagingFailed("B-LT needs revocation data (CRL or OCSP), and none was available")
        etsi_u.append(_etsi_u_element(
            {"xVals": [{"x509Cert": base64.b64encode(c.dump()).decode()} for c in material.asn1_certificates()]}))
        etsi_u.append(_etsi_u_element({"rVals": {
            "crlVals": [base64.b64encode(c).decode() for c in material.crls],
            "ocspVals": [base64.b64encode(o).decode() for o in material.ocsps],
        }}))
    if level is Level.B_LTA:
        if payload is None:  # pragma: no cover - the portal always passes it
            raise PackagingFailed("B-LTA needs the signed payload for the archive time-stamp")
        if timestamper is None:
            raise PackagingFailed(f"{level} needs a time-stamping authority, and none is configured")
        covered = ".".join((b64url(payload), jws.protected, jws.signature)) + "." + "".join(etsi_u)
        token = await _timestamp(hashlib.sha256(covered.encode("ascii")).digest(), timestamper,
                                 "archive time-stamp")
        etsi_u.append(_etsi_u_element({"arcTst": {"tstTokens": [{"val": token}]}}))
    if etsi_u:
        jws.header["etsiU"] = etsi_u
    return jws.to_json()
