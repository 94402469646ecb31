"""Discovery documents checked by authlib's own validators, and the endpoints they name really used.

* The signer's RFC 8414 authorization-server metadata (``/.well-known/oauth-authorization-server``)
  validated by ``authlib.oauth2.rfc8414.AuthorizationServerMetadata.validate()``;
* the IdP's OpenID Connect Discovery 1.0 document validated by
  ``authlib.oidc.discovery.OpenIDProviderMetadata.validate()`` — except the one documented
  deviation (ES256 only; Discovery lists RS256 as mandatory, `docs/idp.md`), asserted as such;
* the CSC ``info`` documents (v1 ``specs`` 1.0.4.0, v2 2.0.0.2) point at that authorization server.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata

pytestmark = pytest.mark.hsm


def test_signer_authorization_server_metadata(ecosystem: Any) -> None:
    document = requests.get(f"{ecosystem.signer_url}/.well-known/oauth-authorization-server", timeout=10).json()
    metadata = AuthorizationServerMetadata(document)
    metadata.validate()  # every RFC 8414 §2 rule authlib knows
    assert metadata["issuer"] == ecosystem.signer_url
    # RFC 9126 §5; the path the CSC API v2 names
    assert metadata["pushed_authorization_request_endpoint"] == f"{ecosystem.signer_url}/oauth2/pushed_authorize"
    assert metadata["code_challenge_methods_supported"] == ["S256"]  # RFC 7636, no "plain"
    assert "credential" in metadata["authorization_details_types_supported"]  # RFC 9396 §10
    # The endpoints the interop flows use are the advertised ones (conftest.InteropEcosystem.authorize).
    assert metadata["token_endpoint"] == f"{ecosystem.signer_url}/oauth2/token"
    assert metadata["authorization_endpoint"] == f"{ecosystem.signer_url}/oauth2/authorize"


def test_idp_openid_discovery(ecosystem: Any) -> None:
    document = requests.get(f"{ecosystem.idp_url}/.well-known/openid-configuration", timeout=10).json()
    assert document["issuer"] == ecosystem.idp_url
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]
    metadata = OpenIDProviderMetadata(document)
    for name in [n for n in dir(metadata) if n.startswith("validate_")]:
        if name == "validate_id_token_signing_alg_values_supported":
            with pytest.raises(ValueError, match="RS256"):  # the documented ES256-only deviation
                getattr(metadata, name)()
            continue
        getattr(metadata, name)()
    assert "S256" in document.get("code_challenge_methods_supported", ["S256"])
    jwks = requests.get(document["jwks_uri"], timeout=10).json()
    assert jwks["keys"] and all(k["kty"] == "EC" and k["crv"] == "P-256" and k.get("kid") for k in jwks["keys"])


@pytest.mark.parametrize(("version", "specs"), [(1, "1.0.4.0"), (2, "2.0.0.2")])
def test_csc_info_names_the_authorization_server(ecosystem: Any, version: int, specs: str) -> None:
    for method in ("POST", "GET"):
        info = requests.request(method, f"{ecosystem.signer_url}/csc/v{version}/info", timeout=10).json()
        assert info["specs"] == specs and info["authType"] == ["oauth2code"]
        # CSC v2 gives oauth2Issuer or oauth2, each only when the other is absent (v1 knows oauth2 only).
        assert info.get("oauth2" if version == 1 else "oauth2Issuer") == ecosystem.signer_url
        assert ("oauth2Issuer" if version == 1 else "oauth2") not in info
        assert {"credentials/list", "credentials/info", "credentials/authorize", "signatures/signHash"} <= set(info["methods"])
    if version == 2:
        assert info["oauth2Issuer"] == ecosystem.signer_url and info["supportsRar"] is True
        assert "signatures/signDoc" in info["methods"]
