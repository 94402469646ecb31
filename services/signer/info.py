"""The CSC ``info`` answer of the SSASP, v1 (1.0.4.0) and v2 (2.0.0.2), field by field as the
specification defines it, and what it must match:

* ``methods`` — every method served under that version's prefix, and the authorization server's
  (``oauth2/authorize``, ``oauth2/token``, ``oauth2/revoke``; v2 also ``oauth2/pushed_authorize``,
  served at ``/oauth2/pushed_authorize`` with ``/oauth2/par`` as an alias). A test compares the
  list with the routes.
* ``oauth2`` (v1) / ``oauth2Issuer`` (v2) — v2 gives each only when the other is absent; the
  issuer (RFC 8414 metadata at ``/.well-known/oauth-authorization-server``) is the one given
  there, the base URI in v1, which has no issuer field.
* ``logo`` — the URI of a PNG of at most 256×256 pixels (served from this package's ``static/``).
* ``region`` — the ISO 3166-1 alpha-2 country of the provider: the lab mirrors a Norwegian one.
* ``conformance_levels`` and ``signature_formats`` (v2) — what ``signDoc`` produces
  (:mod:`services.signer.levels`), nothing more.
"""

from __future__ import annotations

from typing import Any

from services.signer.levels import ADVERTISED_LEVELS, ENVELOPES

__all__ = ["LOGO_PATH", "REGION", "csc_info", "served_methods"]

LOGO_PATH = "/static/ssasp-logo.png"
"""Where the service's logo (PNG, 64×64) is served."""
REGION = "NO"
"""ISO 3166-1 alpha-2 code of the provider's country (the lab's SSASP stands for a Norwegian one)."""

_COMMON = ["credentials/list", "credentials/info", "credentials/authorize", "credentials/extendTransaction",
           "signatures/signHash", "signatures/timestamp"]
_OAUTH2 = {1: ["oauth2/authorize", "oauth2/token", "oauth2/revoke"],
           2: ["oauth2/authorize", "oauth2/token", "oauth2/pushed_authorize", "oauth2/revoke"]}


def served_methods(version: int) -> list[str]:
    """The CSC method names ``info`` of ``version`` lists (the CSC API's and the OAuth2 server's)."""
    own = [*_COMMON[:5], "signatures/signDoc", _COMMON[5]] if version == 2 else list(_COMMON)
    return ["info", *own, *_OAUTH2[version]]


def csc_info(version: int, *, base_url: str, qualifiers: list[str]) -> dict[str, Any]:
    """The ``info`` answer of CSC ``version`` (1 or 2).

    :param base_url: this service's public base URL (the OAuth2 base URI and issuer).
    :param qualifiers: the ``signatureQualifier`` values offered.
    """
    info: dict[str, Any] = {
        "specs": "1.0.4.0" if version == 1 else "2.0.0.2",
        "name": "SignLab SSASP",
        "logo": f"{base_url}{LOGO_PATH}",
        "region": REGION,
        "lang": "en-GB",
        "description": "SignLab remote signing service (simulation): one-time keys in SoftHSM2, short-term certificates.",
        "authType": ["oauth2code"],
        "methods": served_methods(version),
    }
    if version == 1:
        info["oauth2"] = base_url
        return info
    formats = list(ENVELOPES)
    info.update(
        oauth2Issuer=base_url,
        asynchronousOperationMode=False,
        validationInfo=True,
        signAlgorithms={"algos": ["1.2.840.10045.4.3.2", "1.2.840.113549.1.1.11"]},
        signature_formats={"formats": formats, "envelope_properties": [list(ENVELOPES[f]) for f in formats]},
        conformance_levels=list(ADVERTISED_LEVELS),
        # Beyond the info fields of 2.0.0.2 (later CSC versions define them).
        supportsRar=True,
        supportedHashTypes=["SDR", "DTBSR"],
        signatureQualifiers=list(qualifiers),
    )
    return info
