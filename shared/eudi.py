"""EUDI Wallet vocabulary shared by the wallet service (holder, PID provider) and the IPSP (verifier).

The Person Identification Data (PID) is an SD-JWT VC (IETF SD-JWT VC) of type ``urn:eudi:pid:1``
with the claim names of the EUDI PID Rulebook (§4.1.1 of its SD-JWT VC encoding); it is presented
with OpenID for Verifiable Presentations 1.0 (OpenID4VP). The constants below are the values both
sides must agree on; :data:`PID_CLAIMS` gives each claim the plain words a person reads in the
wallet and on the IdP's pages.
"""

from __future__ import annotations

import base64
import hashlib

from joserfc.jws import JWSRegistry

__all__ = [
    "CLIENT_ID_PREFIX",
    "KB_JWT_TYPE",
    "PID_CLAIMS",
    "PID_VCT",
    "REQUEST_OBJECT_TYPE",
    "SD_JWT_VC_FORMAT",
    "SELF_ISSUED_AUDIENCE",
    "TRUSTED_LIST_TYPE",
    "WALLET_MEANS_ID",
    "X5C_JWS",
    "claim_label",
    "x509_hash_client_id",
]

PID_VCT = "urn:eudi:pid:1"
"""The ``vct`` of the PID in SD-JWT VC format (EUDI ARF, PID_14)."""
SD_JWT_VC_FORMAT = "dc+sd-jwt"
"""The credential format identifier in DCQL and ``vp_formats_supported`` and the ``typ`` header of
the issuer-signed JWT (SD-JWT VC §3.2.1; ``vc+sd-jwt`` was the draft's earlier value)."""
KB_JWT_TYPE = "kb+jwt"
"""The ``typ`` of the key-binding JWT (RFC 9901 §4.3)."""
REQUEST_OBJECT_TYPE = "oauth-authz-req+jwt"
"""The ``typ`` of a signed OpenID4VP request object (RFC 9101; OpenID4VP §5: wallets refuse others)."""
SELF_ISSUED_AUDIENCE = "https://self-issued.me/v2"
"""The ``aud`` of a request object when the verifier uses static wallet metadata (OpenID4VP §5.8)."""
CLIENT_ID_PREFIX = "x509_hash"
"""The client identifier prefix the IPSP uses: ``x509_hash:<base64url SHA-256 of its DER leaf
certificate>`` (OpenID4VP §5.9.3; HAIP requires a signed request with this or x509_san_dns)."""
TRUSTED_LIST_TYPE = "signlab-trusted-pid-providers+jwt"
"""The ``typ`` of the signed list of trusted PID providers (a lab format standing in for the EU list
of trusted entities: a JWS with the operator's certificate in ``x5c``, the anchors in the body)."""
WALLET_MEANS_ID = "eudi-wallet"
"""The id of the eID means "EUDI Wallet (PID)" in the IdP catalogue (``login_hint``, ``signlab_eid``)."""

X5C_JWS = JWSRegistry(algorithms=["ES256"])
"""joserfc's JWS registry for tokens that carry certificates in ``x5c`` (request objects, PIDs,
status lists): ES256 only, and protected headers up to 8 KiB (joserfc's default of 512 bytes
refuses any header with a certificate)."""
X5C_JWS.max_header_length = 8192

PID_CLAIMS: dict[str, str] = {
    "family_name": "Family name",
    "given_name": "Given name",
    "birthdate": "Date of birth",
    "nationalities": "Nationality",
    "personal_administrative_number": "Personal administrative number (national identity number)",
    "issuing_country": "Country that issued the PID",
    "issuing_authority": "Authority that issued the PID",
    "date_of_issuance": "Date the PID was issued",
    "date_of_expiry": "Date the PID expires",
}
"""The PID claims SignLab issues, in display order, with their plain-language names."""


def claim_label(name: str) -> str:
    """The plain words for a PID claim name (the name itself when unknown)."""
    return PID_CLAIMS.get(name, name.replace("_", " "))


def x509_hash_client_id(certificate_der: bytes) -> str:
    """``x509_hash:<base64url(SHA-256(DER))>``: the client identifier bound to a verifier's leaf
    certificate (OpenID4VP §5.9.3). The full value, prefix included, is also the ``aud`` the
    key-binding JWT must carry (OpenID4VP §14, "Always Use the Full Client Identifier")."""
    digest = hashlib.sha256(certificate_der).digest()
    return f"{CLIENT_ID_PREFIX}:{base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')}"
