"""THE table that labels every HTTP exchange between roles with its flow step, roles and message.

One row per route of a service: which flow step (1-10, :mod:`shared.flow`) the request belongs to,
which role sends it and which receives it (as docs/design.md §2 names them, also when the
browser carries the message as a redirect), the protocol message's name, and the same for the
response. The tracing hooks look the route up for each incoming request; the renderers draw the
result. Nothing else in SignLab decides what an exchange is called.

It is also the one table of *which step an exchange belongs to* outside the traces: the scenario
runner and the tour ask :func:`label_for` (the step numbers themselves are :mod:`shared.flow`'s).

Which exchanges make a *signing transaction* (the fidelity rule of design §6): every labelled route
that is neither :attr:`RouteLabel.activity` (a page view, a download, a stand-alone validation) nor a
supporting call (:attr:`RouteLabel.inherit_step`: metadata, keys, CRLs, certificates, time-stamps).
A group of traces with no such exchange is *activity*, not a transaction.

Limits: routes are matched on the concrete request path (``<name>`` matches one path segment,
``<path:name>`` the rest), so a service may rename its URL variables freely. A route missing here
is still traced but not drawn (see :attr:`RouteLabel.draw`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from shared.flow import Role

__all__ = ["BACK", "FRONT", "INTERNAL", "ROUTES", "RouteLabel", "guess_label", "label_for"]

FRONT = "front"
"""Front channel: the signer's browser carries the message (page, form post or redirect)."""
BACK = "back"
"""Back channel: one service calls another directly."""
INTERNAL = "internal"
"""Inside one service (HSM operations, CMS building)."""


@dataclass(frozen=True)
class RouteLabel:
    """How one route appears in a trace.

    :ivar service: the service that serves the route (``portal``, ``idp``, ``ca``, ``signer``, ``wallet``).
    :ivar methods: the HTTP methods it labels.
    :ivar pattern: the path, with ``<name>`` (one segment) and ``<path:name>`` (the rest) variables.
    :ivar step: the flow step of the request.
    :ivar source: the role that sends the request (the logical sender: for a redirect, the role
        that made the browser go there; for a back-channel call, the default when the caller is
        not traced).
    :ivar target: the role that receives it (the role of ``service``, or PIDP for the PID provider the
        wallet service hosts; HSM never appears here).
    :ivar message: the protocol message's name.
    :ivar response: the name of the response.
    :ivar response_step: the flow step of the response (default: ``step``).
    :ivar channel: :data:`FRONT` or :data:`BACK`.
    :ivar inherit_step: a supporting call (JWKS, CRL, OCSP, CA certificates): take the step of the
        exchange it happens inside, when there is one.
    :ivar draw: False for polling and metadata calls that clutter a diagram (still stored).
    :ivar activity: a page view, a download, a stand-alone validation or an administrative call:
        it belongs to a transaction only while the transaction runs (the review page before the
        signer confirms); after the transaction's end it never extends it, and on its own it is
        *activity*, never a transaction.
    :ivar completes: the exchange whose successful answer completes a signing when nothing traced
        called it (the portal's callback; ``signDoc`` / ``signHash`` called by a partner directly).
    """

    service: str
    methods: tuple[str, ...]
    pattern: str
    step: int
    source: Role
    target: Role
    message: str
    response: str
    response_step: int | None = None
    channel: str = BACK
    inherit_step: bool = False
    draw: bool = True
    activity: bool = False
    completes: bool = False

    @property
    def regex(self) -> re.Pattern[str]:
        """The compiled path pattern."""
        return _compile(self.pattern)


S, SC, SS, IP, TS = Role.SIGNER, Role.SCASP, Role.SSASP, Role.IPSP, Role.TSP
W, PP = Role.WALLET, Role.PIDP
GET, POST, ANY = ("GET",), ("POST",), ("GET", "POST")

ROUTES: tuple[RouteLabel, ...] = (
    # ---- SCASP: the partner portal -------------------------------------------------------------
    RouteLabel("portal", GET, "/", 1, S, SC, "portal page", "upload form", channel=FRONT, activity=True),
    RouteLabel("portal", POST, "/sign", 1, S, SC, "documents and signing options",
               "redirect to the review page", channel=FRONT),
    RouteLabel("portal", POST, "/api/v1/sign-requests", 1, S, SC, "signing request (API)",
               "transaction id and review_url", channel=FRONT),
    RouteLabel("portal", GET, "/review/<token>", 1, S, SC, "review page", "each document with the digest to be signed",
               channel=FRONT, activity=True),
    RouteLabel("portal", GET, "/review/<token>/documents/<idx>/pages/<page>.png", 1, S, SC, "document preview",
               "rendered page", channel=FRONT, draw=False, activity=True),
    RouteLabel("portal", POST, "/review/<token>", 2, S, SC, "the signer confirms the documents",
               "redirect to the SSASP (request_uri)", response_step=3, channel=FRONT),
    RouteLabel("portal", GET, "/sign/callback", 5, SS, SC, "authorization response (code, state)",
               "redirect to the result page", response_step=10, channel=FRONT, completes=True),
    RouteLabel("portal", POST, "/sign/again", 1, S, SC, "start again with the same documents",
               "redirect to the new review page", channel=FRONT),
    RouteLabel("portal", GET, "/transactions/<id>", 10, S, SC, "result page",
               "signed documents and validation report", channel=FRONT, activity=True),
    RouteLabel("portal", GET, "/transactions/<id>/documents/<idx>", 10, S, SC, "download", "signed document",
               channel=FRONT, activity=True),
    RouteLabel("portal", GET, "/api/v1/transactions/<id>/documents/<idx>", 10, S, SC, "download (API)",
               "signed document", channel=FRONT, activity=True),
    RouteLabel("portal", GET, "/api/v1/transactions/<id>", 10, S, SC, "transaction status (API)", "status",
               channel=FRONT, draw=False, activity=True),
    RouteLabel("portal", ANY, "/validate", 10, S, SC, "validation request", "validation report", channel=FRONT,
               activity=True),
    RouteLabel("portal", POST, "/api/v1/validate", 10, S, SC, "validation request (API)", "validation report",
               channel=FRONT, activity=True),
    RouteLabel("portal", GET, "/api/v1/reports/<id>", 10, S, SC, "validation report (API)", "validation report",
               channel=FRONT, draw=False, activity=True),
    # ---- SSASP: the signing service (OAuth2 AS for partners, CSC API) ------------------------------
    RouteLabel("signer", POST, "/oauth2/par", 2, SC, SS, "pushed authorization request (PAR)", "request_uri"),
    RouteLabel("signer", POST, "/oauth2/pushed_authorize", 2, SC, SS, "pushed authorization request (PAR)",
               "request_uri", draw=False),  # the CSC name of the same endpoint
    RouteLabel("signer", GET, "/oauth2/authorize", 3, SC, SS, "authorization request (request_uri)",
               "redirect to the IPSP (OIDC authentication request)", channel=FRONT),
    RouteLabel("signer", GET, "/oauth2/idp-callback", 5, IP, SS, "OIDC authentication response (code)",
               "redirect to the consent page", channel=FRONT),
    RouteLabel("signer", GET, "/oauth2/consent/<id>", 5, S, SS, "consent page request",
               "consent page (partner, documents, digests)", channel=FRONT),
    RouteLabel("signer", POST, "/oauth2/consent/<id>", 5, S, SS, "consent decision",
               "redirect to the SCASP (authorization code)", channel=FRONT),
    RouteLabel("signer", POST, "/oauth2/token", 5, SC, SS, "token request (code + PKCE verifier)",
               "access token (the SAD; a service token in the certificate-first flow)"),
    RouteLabel("signer", POST, "/oauth2/revoke", 10, SC, SS, "token revocation", "revoked"),
    RouteLabel("signer", GET, "/.well-known/oauth-authorization-server", 2, SC, SS, "authorization server metadata",
               "metadata", inherit_step=True, draw=False),
    RouteLabel("signer", GET, "/.well-known/jwks.json", 7, TS, SS, "JWKS request (client-assertion keys)", "JWKS",
               inherit_step=True),
    RouteLabel("signer", POST, "/csc/v2/signatures/signDoc", 6, SC, SS, "CSC signDoc (digests + SAD)",
               "signature objects and validation info", response_step=10, completes=True),
    RouteLabel("signer", POST, "/csc/<v>/signatures/signHash", 8, SC, SS, "CSC signHash (DTBS/R hashes + SAD)",
               "signatures", response_step=10, completes=True),
    RouteLabel("signer", POST, "/csc/<v>/credentials/authorize", 2, SC, SS,
               "CSC credentials/authorize (hashes)", "SAD"),
    RouteLabel("signer", POST, "/csc/<v>/credentials/extendTransaction", 5, SC, SS,
               "CSC credentials/extendTransaction", "SAD"),
    RouteLabel("signer", POST, "/csc/<v>/credentials/list", 7, SC, SS, "CSC credentials/list", "credential ids"),
    RouteLabel("signer", POST, "/csc/<v>/credentials/info", 7, SC, SS, "CSC credentials/info",
               "certificate and key info"),
    RouteLabel("signer", POST, "/csc/<v>/signatures/timestamp", 10, SC, SS, "CSC signatures/timestamp",
               "time-stamp token"),
    RouteLabel("signer", ANY, "/csc/<v>/info", 2, SC, SS, "CSC info", "service info", draw=False),
    # ---- IPSP: the eID provider -------------------------------------------------------------------
    RouteLabel("idp", GET, "/.well-known/openid-configuration", 3, SS, IP, "OIDC discovery", "provider metadata",
               inherit_step=True),
    RouteLabel("idp", GET, "/.well-known/jwks.json", 5, SS, IP, "JWKS request (ID-token keys)", "JWKS",
               inherit_step=True),
    # Its answer is step 4: the login page, or (headless login with login_hint) the code.
    RouteLabel("idp", GET, "/authorize", 3, SS, IP, "OIDC authentication request (acr_values, nonce, PKCE)",
               "login page or authentication response", response_step=4, channel=FRONT),
    RouteLabel("idp", GET, "/login/<rid>", 4, S, IP, "eID login page request", "login page", channel=FRONT),
    RouteLabel("idp", POST, "/login/<rid>", 4, S, IP, "eID login step (person, means, one-time code)",
               "next login page or authentication response", channel=FRONT),
    # The EUDI Wallet login (OpenID4VP, inside step 4): device choice, the wallet's back channel, the return.
    RouteLabel("idp", GET, "/openid4vp/login/<rid>", 4, S, IP, "EUDI Wallet login page request",
               "choice: wallet on this device or another", channel=FRONT),
    RouteLabel("idp", POST, "/openid4vp/login/<rid>", 4, S, IP, "wallet on this device / another device",
               "OpenID4VP authorization request (client_id, request_uri)", channel=FRONT),
    RouteLabel("idp", GET, "/openid4vp/request/<id>", 4, W, IP, "request object request (request_uri)",
               "signed request object (DCQL query, nonce, response_uri)"),
    RouteLabel("idp", POST, "/openid4vp/response/<id>", 4, W, IP,
               "authorization response (direct_post.jwt: PID presentation, key-binding JWT)",
               "response processed (redirect_uri with response_code)"),
    RouteLabel("idp", GET, "/openid4vp/wait/<id>", 4, S, IP, "QR code page", "QR code (openid4vp:// request)",
               channel=FRONT),
    RouteLabel("idp", GET, "/openid4vp/status/<id>", 4, S, IP, "wallet status (polling)", "status", channel=FRONT,
               draw=False),
    RouteLabel("idp", GET, "/openid4vp/complete/<id>", 4, W, IP, "back from the wallet (response_code)",
               "authentication response", channel=FRONT),
    RouteLabel("idp", POST, "/token", 5, SS, IP, "OIDC token request (code + PKCE verifier)",
               "ID token and access token"),
    RouteLabel("idp", ANY, "/userinfo", 5, SS, IP, "userinfo request", "claims"),
    # ---- the signer's EUDI Wallet (the person's device) and the PID provider it hosts ---------------
    RouteLabel("wallet", GET, "/authorize", 4, IP, W, "OpenID4VP authorization request (client_id, request_uri)",
               "the request shown: verifier, purpose, claims", channel=FRONT),
    RouteLabel("wallet", POST, "/scan", 4, S, W, "scanned QR code (openid4vp:// link)", "the request opened",
               channel=FRONT),
    RouteLabel("wallet", GET, "/requests/<id>", 4, S, W, "the request, for another holder", "the request shown",
               channel=FRONT, draw=False),
    RouteLabel("wallet", POST, "/requests/<id>", 4, S, W, "the person's decision (share or decline)",
               "back to the IPSP", channel=FRONT),
    RouteLabel("wallet", POST, "/api/v1/presentations", 4, S, W, "the person's decision (headless: share or decline)",
               "presentation sent (the IPSP's answer)", channel=FRONT),
    RouteLabel("wallet", GET, "/pid-provider/status-lists/<id>", 4, IP, PP, "Token Status List request",
               "status list (statuslist+jwt)", inherit_step=True),
    RouteLabel("wallet", GET, "/pid-provider/trusted-providers", 4, IP, PP, "list of trusted PID providers request",
               "signed list (trust anchors)", inherit_step=True),
    # ---- TSP: CA, OCSP, CRL, TSA, trusted list ------------------------------------------------------
    RouteLabel("ca", POST, "/api/v1/certificates", 7, SS, TS,
               "certificate request (CSR + ID token + client assertion)", "short-term certificate and chain"),
    RouteLabel("ca", GET, "/api/v1/certificates/<serial>", 10, SC, TS, "certificate status", "certificate",
               inherit_step=True),
    RouteLabel("ca", POST, "/api/v1/certificates/<serial>/revoke", 10, SC, TS, "revocation request", "revoked",
               activity=True),
    RouteLabel("ca", GET, "/certs/<name>", 10, SC, TS, "CA certificate request", "certificate", inherit_step=True),
    RouteLabel("ca", GET, "/crl/<name>", 10, SC, TS, "CRL request", "CRL", inherit_step=True),
    RouteLabel("ca", POST, "/ocsp", 10, SC, TS, "OCSP request", "OCSP response", inherit_step=True),
    RouteLabel("ca", GET, "/ocsp/<path:request>", 10, SC, TS, "OCSP request", "OCSP response", inherit_step=True),
    RouteLabel("ca", POST, "/tsa", 10, SC, TS, "time-stamp request (RFC 3161)", "time-stamp token",
               inherit_step=True),
    RouteLabel("ca", GET, "/tl/trusted-list.xml", 10, SC, TS, "trusted list request", "trusted list (TS 119 612)",
               inherit_step=True),
)
"""Every labelled route. Order matters only where two patterns match the same path (first wins)."""


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    parts = []
    for token in re.split(r"(<[^>]+>)", pattern):
        if token.startswith("<path:"):
            parts.append(r".+")
        elif token.startswith("<"):
            parts.append(r"[^/]+")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts) + r"/?")


def label_for(service: str, method: str, path: str) -> RouteLabel | None:
    """The label of ``method path`` at ``service``, or ``None`` for an unlabelled route."""
    method = "GET" if method == "HEAD" else method
    for route in ROUTES:
        if route.service == service and method in route.methods and route.regex.fullmatch(path):
            return route
    return None


def guess_label(method: str, path: str) -> RouteLabel | None:
    """The label of ``method path`` at whichever service has such a route (for calls that got no
    traced answer: the callee is known only by its URL)."""
    method = "GET" if method == "HEAD" else method
    return next((r for r in ROUTES if method in r.methods and r.regex.fullmatch(path)), None)
