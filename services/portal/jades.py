"""JAdES (ETSI TS 119 182-1) for JSON payloads: detached, with ``sigD``, JSON serialization.

The DTBS/R is the SHA-256 of the payload file (DESIGN.md step 2); the SSASP returns a JWS whose
protected header carries ``sigD`` (``mId`` ObjectIdByURIHash, ``pars`` = the label, ``hashM`` S256,
``hashV`` = the base64url digest), ``x5c`` and ``sigT``, with a detached (empty) payload — either
compact (``header..signature``) or flattened JSON. The portal writes the flattened JSON
serialization, the payload stays a separate file, and the levels go into the unprotected
``etsiU`` array:

* B-T: ``{"sigTst": {"tstTokens": [{"val": <b64 RFC 3161 token>}]}}``, the time-stamp's message
  imprint being SHA-256 over the ASCII base64url JWS signature value;
* B-LT: ``{"xVals": [{"x509Cert": <b64 DER>}…]}`` and ``{"rVals": {"crlVals": […], "ocspVals": […]}}``.

Limit: B-LTA (``arcTst``) is not implemented; the portal refuses it at step 1.
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
from services.portal.errors import PackagingFailed
from services.portal.ltv import ValidationMaterial

__all__ = ["SUPPORTED_LEVELS", "JadesSignature", "augment_jades", "b64url_decode", "digest", "parse_jws"]

SUPPORTED_LEVELS = (Level.B_B, Level.B_T, Level.B_LT)


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


async def augment_jades(
    signature: bytes, *, level: Level, timestamper: TimeStamper | None, material: ValidationMaterial
) -> bytes:
    """Package the SSASP's JWS at ``level``; return the JAdES JSON file bytes."""
    if level not in SUPPORTED_LEVELS:
        raise PackagingFailed(f"JAdES {level} is not supported by this portal")
    try:
        jws = parse_jws(signature)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise PackagingFailed(f"the signing service returned something that is not a detached JWS ({exc})") from None
    etsi_u: list[dict[str, Any]] = list(jws.header.get("etsiU", []))
    if level.rank >= Level.B_T.rank:
        if timestamper is None:
            raise PackagingFailed(f"{level} needs a time-stamping authority, and none is configured")
        imprint = hashlib.sha256(jws.signature.encode("ascii")).digest()
        try:
            token = await timestamper.async_timestamp(imprint, "sha256")
        except Exception as exc:  # the TSA client raises several unrelated types
            raise PackagingFailed(f"the time-stamping authority did not time-stamp the signature ({exc})") from None
        etsi_u.append({"sigTst": {"tstTokens": [{"val": base64.b64encode(token.dump()).decode()}]}})
    if level.rank >= Level.B_LT.rank:
        if not material.crls and not material.ocsps:
            raise PackagingFailed("B-LT needs revocation data (CRL or OCSP), and none was available")
        etsi_u.append({"xVals": [{"x509Cert": base64.b64encode(c.dump()).decode()} for c in material.asn1_certificates()]})
        etsi_u.append({"rVals": {
            "crlVals": [base64.b64encode(c).decode() for c in material.crls],
            "ocspVals": [base64.b64encode(o).decode() for o in material.ocsps],
        }})
    if etsi_u:
        jws.header["etsiU"] = etsi_u
    return jws.to_json()
