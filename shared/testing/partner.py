"""The partner (SCASP) side of signer tests: PAR, a headless browser through the IdP and the
consent page, the token exchange, and a one-page PDF to sign.

Limits: for tests only. The browser is :func:`shared.testing.browse_until` (the IdP logs in
without HTML through ``login_hint``); the portal's redirect URI :data:`PORTAL_REDIRECT` is never
contacted: the test reads ``code`` and ``state`` from the redirect.
"""

from __future__ import annotations

import secrets
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

from shared.clients.signer import SignerClient
from shared.testing import browse_until

__all__ = ["PORTAL_REDIRECT", "Portal", "browse", "make_pdf"]

PORTAL_REDIRECT = "http://127.0.0.1:9/sign/callback"
"""The portal's registered redirect URI in signer tests (port 9, the discard port: nothing listens)."""


def make_pdf() -> bytes:
    """A one-page PDF."""
    writer = PdfFileWriter()
    stream = writer.add_object(generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 720 Td (Contract) Tj ET"))
    writer.insert_page(PageObject(contents=stream, media_box=(0, 0, 595, 842)))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


class Portal:
    """The partner side of the tests: PAR, a headless browser through IdP and consent, token.

    :param eco: an ecosystem with ``signer_url`` and ``portal_key`` (the key of the portal's
        ``private_key_jwt`` client assertions, whose JWKS the signer knows).
    """

    def __init__(self, eco: Any) -> None:
        self.eco = eco
        self.client = SignerClient(eco.signer_url, client_id="signlab-portal", assertion_key=eco.portal_key)

    def authorize(self, *, documents: list[tuple[bytes, str]] = (), qualifier: str = "eu_eidas_qes",  # type: ignore[assignment]
                  login_hint: str = "kari-nordmann@no-bankid", approve: bool = True, scope: str | None = None,
                  num_signatures: int | None = None, credential_id: str | None = None,
                  extra: dict[str, str] | None = None) -> tuple[dict[str, list[str]], str, str]:
        """PAR + browser; returns (query of the final redirect to the portal, code_verifier, state)."""
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(8)
        par = self.client.push_authorization_request(
            redirect_uri=PORTAL_REDIRECT, state=state, code_challenge=create_s256_code_challenge(verifier),
            qualifier=qualifier, documents=documents, login_hint=login_hint, scope=scope,
            num_signatures=num_signatures, credential_id=credential_id, extra=extra)
        return browse(par.authorize_url, approve=approve), verifier, state

    def token(self, **kwargs: Any) -> Any:
        """:meth:`authorize`, then the token exchange; the signer's token answer."""
        query, verifier, state = self.authorize(**kwargs)
        assert query.get("state") == [state]
        assert "code" in query, query
        return self.client.exchange_code(query["code"][0], PORTAL_REDIRECT, verifier)


def browse(url: str, *, approve: bool = True, session: requests.Session | None = None) -> dict[str, list[str]]:
    """Through the IdP and consent like a browser; the query of the redirect to the portal."""
    return parse_qs(urlparse(browse_until(url, PORTAL_REDIRECT, session=session, approve=approve)).query)


def no_keys(eco: Any) -> None:
    """The signer's HSM holds no key object (every one-time key was destroyed)."""
    assert eco.service.hsm.key_objects() == []
