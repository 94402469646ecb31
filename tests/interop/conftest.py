"""The interop suite's ecosystem: the four real SignLab apps on loopback, driven by outside clients.

Everything under ``tests/interop`` talks to SignLab only the way a third party would: real HTTP on
127.0.0.1 ports, with clients nobody on the team wrote (pyHanko's ``CSCSigner``, authlib's OAuth 2
client, schemathesis, a real Chromium through Playwright, pkilint). The apps themselves are the
production apps (``create_app`` of each service) with real SoftHSM, real keys and real tokens.

One ecosystem serves the whole package (``scope="package"``: built once for the interop suite,
torn down — HSM emptied — before the rest of the test session runs). SoftHSM reads its
configuration once per process, so the signer uses the suite's single provisioned token
(``signer_settings`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests
from asn1crypto import x509
from authlib.common.urls import add_params_to_qs
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from pydantic import SecretStr

from services.registry import lab_url
from services.signer.settings import SecretPartner, SignerSettings
from shared.client_assertion import CLIENT_ASSERTION_TYPE, create_client_assertion
from shared.jose_keys import load_ec_key
from shared.testing import LiveServer, browse_to_portal, browse_until, chromium, confirm_review, free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

PARTNER_REDIRECT = "http://127.0.0.1:9/interop/callback"
"""A second redirect URI of the partner client, used by the tests' own OAuth client.

Never contacted: the headless agent stops at the redirect and reads ``code``/``state`` from it
(port 9 is the discard port; nothing listens there)."""

QES_HINT = "kari-nordmann@no-bankid"
ADES_HINT = "kari-nordmann@no-minid"
SHA256_OID = "2.16.840.1.101.3.4.2.1"


@dataclass(frozen=True)
class Tokens:
    """What the signer's token endpoint answered (the raw JSON)."""

    body: dict[str, Any]

    @property
    def access_token(self) -> str:
        return str(self.body["access_token"])

    @property
    def credential_id(self) -> str | None:
        return self.body.get("credentialID")


class _PortalAssertionAuth:
    """authlib client authentication ``private_key_jwt`` (RFC 7523) with the portal's key and
    ``aud`` = the called endpoint (authlib's own ``PrivateKeyJWT`` makes assertions that live an
    hour; the signer accepts at most five minutes, as the TSP does)."""

    name = "private_key_jwt"

    def __init__(self, ecosystem: Ecosystem) -> None:
        self.ecosystem = ecosystem

    def __call__(self, auth: Any, method: str, uri: str, headers: Any, body: str) -> tuple[str, Any, str]:
        return uri, headers, add_params_to_qs(body or "", list(self.ecosystem.portal_assertion(uri).items()))


class Ecosystem:
    """IdP, CA, signer and portal, each the real app on its own loopback port; the IdP sends wallet
    logins to the session's wallet (``live_wallet`` in ``tests/conftest.py``)."""

    def __init__(self, tmp: Path, signer_settings: SignerSettings, wallet_url: str) -> None:
        from services.ca import create_app as create_ca
        from services.ca.provision import provision as provision_ca
        from services.ca.settings import CaSettings
        from services.idp import create_app as create_idp
        from services.idp.settings import IdpSettings
        from services.portal import create_app as create_portal
        from services.portal.provision import provision as provision_portal
        from services.portal.settings import PortalSettings
        from services.signer import create_app as create_signer
        from services.signer.provision import provision as provision_signer

        self.tmp = tmp
        idp_port, ca_port, signer_port, portal_port = free_port(), free_port(), free_port(), free_port()
        self.idp_url, self.ca_url = f"http://127.0.0.1:{idp_port}", f"http://127.0.0.1:{ca_port}"
        self.signer_url, self.portal_url = f"http://127.0.0.1:{signer_port}", f"http://127.0.0.1:{portal_port}"
        # The linked secret (registry.LINKED_SECRETS) gets one value, as `signlab up` does.
        idp_secret = secrets.token_urlsafe(24)
        # A further partner that authenticates with a client secret (HTTP Basic): the fuzzer's.
        self.secret_partner = ("interop-partner", secrets.token_urlsafe(24))
        self.ca_admin = secrets.token_urlsafe(16)
        self.idp_settings = IdpSettings(
            port=idp_port, data_dir=tmp / "idp", signer_client_secret=SecretStr(idp_secret),
            signer_redirect_uris=[f"{self.signer_url}/oauth2/idp-callback"],
            admin_token=SecretStr(secrets.token_urlsafe(16)), trainer_token=SecretStr("trainer-token-of-the-tests"),
            log_level="WARNING", wallet_url=wallet_url,
            wallet_trusted_list_url=f"{wallet_url}/pid-provider/trusted-providers")
        self.wallet_url = wallet_url
        # As `signlab up` does: the certificates name the lab host and this CA's port, so a stock
        # validator on this machine fetches their revocation data from this CA (test_stock_validator).
        self.ca_settings = CaSettings(
            port=ca_port, data_dir=tmp / "ca", idp_url=self.idp_url, public_cert_base=lab_url("ca", ca_port),
            signer_jwks_url=f"{self.signer_url}/.well-known/jwks.json",
            admin_token=SecretStr(self.ca_admin), trainer_token=SecretStr("trainer-token-of-the-tests"), log_level="WARNING")
        provision_ca(self.ca_settings)
        self.signer_settings = signer_settings.model_copy(update={
            "port": signer_port, "state_dir": tmp / "signer-state", "idp_url": self.idp_url, "ca_url": self.ca_url,
            "idp_client_secret": SecretStr(idp_secret),
            "portal_jwks_url": f"{self.portal_url}/.well-known/jwks.json",
            "portal_redirect_uris": [f"{self.portal_url}/sign/callback", PARTNER_REDIRECT],
            "partner_clients": [SecretPartner(client_id=self.secret_partner[0],
                                              client_secret=SecretStr(self.secret_partner[1]),
                                              name="Interop partner", redirect_uris=[PARTNER_REDIRECT])],
            "sweep_interval_seconds": 0, "log_level": "WARNING"})
        provision_signer(self.signer_settings)
        self.portal_settings = PortalSettings(
            port=portal_port, data_dir=tmp / "portal", signer_url=self.signer_url, ca_url=self.ca_url,
            idp_url=self.idp_url, session_secret=SecretStr(secrets.token_urlsafe(32)), trainer_token=SecretStr("trainer-token-of-the-tests"),
            api_client_secret=SecretStr("api-secret-of-the-tests"), log_level="WARNING", transaction_ttl_seconds=300)
        self.servers: list[LiveServer] = []
        self.idp = self._serve(create_idp(self.idp_settings), idp_port)
        self.ca = self._serve(create_ca(self.ca_settings), ca_port)
        self.signer_app = create_signer(self.signer_settings)
        self.signer = self._serve(self.signer_app, signer_port)
        provision_portal(self.portal_settings)  # fetches the root and trusted list from the running CA
        self.portal = self._serve(create_portal(self.portal_settings), portal_port)

    def _serve(self, app: Any, port: int) -> LiveServer:
        live = LiveServer(app, port).start()
        self.servers.append(live)
        return live

    # ------------------------------------------------------------------ handles

    @property
    def signer_service(self) -> Any:
        """The signer's core (store, audit, HSM) — only for checking side effects, never for driving."""
        return self.signer_app.extensions["signlab.signer"]

    @property
    def ca_database(self) -> Path:
        """The CA's certificate database (every certificate it issued)."""
        return self.ca_settings.data_dir / "ca.sqlite3"

    def root(self) -> x509.Certificate:
        """The SignLab root, as any relying party downloads it."""
        return x509.Certificate.load(requests.get(f"{self.ca_url}/certs/root.crt", timeout=10).content)

    def validation_context(self, **kwargs: Any) -> Any:
        """pyhanko-certvalidator context: trust exactly the SignLab root, revocation required.

        CRL/OCSP/caIssuers URLs in the certificates name the CA's public base; the CA's own
        fetcher backend maps them to this run's CA (the real OCSP responder and CRLs are used).
        """
        from pyhanko_certvalidator import ValidationContext

        from shared.clients.ca import CaClient

        ca = CaClient(self.ca_url, public_cert_base=self.ca_settings.public_cert_base)
        options: dict[str, Any] = {"trust_roots": [self.root()], "allow_fetching": True,
                                   "revocation_mode": "require", "fetcher_backend": ca.fetcher_backend()}
        options.update(kwargs)
        return ValidationContext(**options)

    # ------------------------------------------------------------------ a partner's OAuth client

    def portal_assertion(self, audience: str) -> dict[str, str]:
        """The form fields of a ``private_key_jwt`` client assertion signed with the portal's key
        (the harness plays the portal, whose key the signer knows from its JWKS)."""
        key = load_ec_key(self.portal_settings.client_assertion_key_path)
        return {"client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": create_client_assertion(key, client_id="signlab-portal", audience=audience)}

    def oauth_client(self) -> OAuth2Session:
        """authlib's OAuth 2 client for the partner (private_key_jwt with the portal's key, PKCE S256)."""
        session = OAuth2Session(client_id="signlab-portal", token_endpoint_auth_method="private_key_jwt",
                                redirect_uri=PARTNER_REDIRECT, code_challenge_method="S256")
        session.register_client_auth_method(_PortalAssertionAuth(self))
        return session

    def authorize(self, form: dict[str, str], *, login_hint: str | None = QES_HINT) -> Tokens:
        """A complete partner authorization: PAR (RFC 9126), browser, token (RFC 6749 + RFC 7636).

        ``form`` holds the request-specific parameters (``scope``/``authorization_details``…);
        the PKCE pair, state and client authentication are added here. The user agent logs in
        headlessly at the IdP through ``login_hint`` and approves the signer's consent page.
        """
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(12)
        body = {"response_type": "code", "client_id": "signlab-portal", "redirect_uri": PARTNER_REDIRECT,
                "state": state, "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256", **form}
        if login_hint:
            body["login_hint"] = login_hint
        par_url = f"{self.signer_url}/oauth2/par"
        par = requests.post(par_url, data={**body, **self.portal_assertion(par_url)}, timeout=30)
        assert par.status_code == 201, par.text
        assert par.headers.get("Cache-Control") == "no-store"
        request_uri = par.json()["request_uri"]
        assert request_uri.startswith("urn:ietf:params:oauth:request_uri:")
        query = headless_browse(f"{self.signer_url}/oauth2/authorize?client_id=signlab-portal&request_uri="
                                f"{requests.utils.quote(request_uri, safe='')}")
        assert query.get("state") == [state], query
        assert "code" in query, query
        client = self.oauth_client()
        token = client.fetch_token(f"{self.signer_url}/oauth2/token", grant_type="authorization_code",
                                   code=query["code"][0], code_verifier=verifier)
        return Tokens(dict(token))

    def service_authorization(self, *, num_signatures: int = 1, qualifier: str = "eu_eidas_qes",
                              login_hint: str = QES_HINT, scal: str | None = None) -> Tokens:
        """Certificate-first service authorization (CSC ``scope=service``): token + credentialID.

        :param scal: ``"1"`` asks for the explicit count-only mode (``credentials/authorize`` issues
            the SADs); by default the credential is SCAL 2 (each SAD from the person's approval).
        """
        form = {"scope": "service", "signatureQualifier": qualifier, "numSignatures": str(num_signatures)}
        tokens = self.authorize({**form, **({"SCAL": scal} if scal else {})}, login_hint=login_hint)
        assert tokens.body["scope"] == "service" and tokens.credential_id, tokens.body
        return tokens

    partner = ("signlab-lab", "api-secret-of-the-tests")
    """The lab's partner application at the portal (HTTP Basic)."""

    def portal_sign(self, documents: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """A signing request through the portal's JSON API, run by the headless agent; the transaction JSON.

        The agent stops at the portal's OAuth redirect URI and then opens it (the portal's
        callback does the token exchange, signDoc, packaging and validation).
        """
        created = requests.post(f"{self.portal_url}/api/v1/sign-requests", json={"documents": documents, **options},
                                auth=self.partner, timeout=60)
        assert created.status_code == 201, created.text
        body = created.json()
        session = requests.Session()
        authorize_url = confirm_review(body["review_url"], session)
        answer = browse_to_portal(authorize_url, f"{self.portal_url}/sign/callback", session=session)
        landed = session.get(urljoin(self.portal_url, answer.headers["Location"]), timeout=120) \
            if answer.is_redirect else answer
        assert landed.status_code == 200, landed.text[:500]
        return dict(requests.get(body["status_url"], auth=self.partner, timeout=30).json())

    def stop(self) -> None:
        """Stop the servers (portal first) and empty the HSM of any key a test left behind."""
        for live in reversed(self.servers):
            live.stop()
        service = self.signer_service
        real = service.clock
        service.clock = lambda: real() + 24 * 3600  # every credential and transaction is now expired
        try:
            service.sweep()
        finally:
            service.clock = real


def headless_browse(url: str, *, session: requests.Session | None = None, stop_at: str = PARTNER_REDIRECT,
                    approve: bool = True) -> dict[str, list[str]]:
    """A minimal user agent: follow redirects, submit the signer's consent form; the final query.

    The IdP logs in without HTML when the ``login_hint`` names a person (see `docs/idp.md`).
    """
    return parse_qs(urlparse(browse_until(url, stop_at, session=session, approve=approve)).query)


@pytest.fixture(scope="package")
def ecosystem(signer_settings: SignerSettings, tmp_path_factory: pytest.TempPathFactory,
              live_wallet: Any) -> Iterator[Ecosystem]:
    """The four real services on loopback (and the session's EUDI Wallet), shared by the interop suite."""
    tmp = tmp_path_factory.mktemp("interop")
    # One trace store for the four apps, as `signlab up` gives them (the signer's data directory is
    # the suite's provisioned token's, elsewhere): the traces of one signing are one transaction.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIGNLAB_TRACE_DIR", str(tmp / "traces"))
        env = Ecosystem(tmp, signer_settings, live_wallet[0].url)
    try:
        yield env
    finally:
        env.stop()
        assert env.signer_service.hsm.key_objects() == [], "one-time keys left in the HSM after the interop suite"


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """``test-artifacts/`` at the repository root (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, one per test module: Playwright's sync API keeps an
    event loop running in this thread while it lives, and other modules (pyHanko's client) call
    ``asyncio.run``. Skips, with the reason, only if it cannot be launched."""
    with chromium() as launched:
        yield launched
