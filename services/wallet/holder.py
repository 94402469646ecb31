"""The wallet's core (no Flask): the PIDs it holds, and what it does with a verifier's request.

One presentation, as OpenID4VP 1.0 has it (the wallet's side):

1. **Invocation** — a URL with only ``client_id`` and ``request_uri`` (§5.10 and RFC 9101 §5.2):
   the ``openid4vp://`` link a QR code carries, or the wallet's own ``/authorize`` link the
   verifier redirects to on the same device.
2. **Request object** — ``GET request_uri`` returns a signed JWT. The wallet checks: ``typ``
   ``oauth-authz-req+jwt`` (§5: refuse anything else); the ``client_id`` of the invocation equals
   the one in the object; the prefix ``x509_hash`` (§5.9.3): the object's ``x5c`` leaf hashes
   (SHA-256, base64url) to the client identifier and its key verifies the signature;
   ``response_type`` ``vp_token``; ``response_mode`` ``direct_post`` or ``direct_post.jwt`` with a
   ``response_uri`` and no ``redirect_uri`` (§8.2); a ``nonce``; a DCQL query (§6) for a
   ``dc+sd-jwt`` credential of type ``urn:eudi:pid:1``.
3. **Selection** — the claims the query names (§6.3, claims path pointers §7) are looked up in the
   person's PID; a claim the PID lacks makes the PID unusable for this request (all claims of a
   credential query are required when there are no ``claim_sets``). The person sees the verifier,
   the purpose, what it will receive and what stays hidden.
4. **Response** — the ``sd-jwt`` library builds the presentation: the issuer-signed JWT, exactly the
   selected disclosures and a key-binding JWT (RFC 9901 §4.3) over the verifier's ``nonce``, the
   full ``client_id`` as ``aud`` and ``sd_hash``, signed by the device key the PID is bound to. The
   ``vp_token`` (``{"<query id>": [presentation]}``, §8.1) and ``state`` are encrypted to the
   verifier's key from ``client_metadata.jwks`` (ECDH-ES, §8.3) for ``direct_post.jwt`` and POSTed
   as ``response=<JWE>``; a refusal is POSTed as ``error=access_denied`` (§8.5). The verifier's
   answer may carry a ``redirect_uri`` the browser must follow (same-device flow).

Limits (lab, shown on the pages): the wallet trusts any verifier certificate it is given (no
registrar of relying parties, no access-certificate CA); no wallet attestation; PIDs are
provisioned by the lab PID provider, not issued over OpenID4VCI; the device key is a file, not a
secure element.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from jwcrypto.jwk import JWK
from sd_jwt.holder import SDJWTHolder
from sd_jwt.verifier import SDJWTVerifier

from services.wallet.pid_provider import PidProvider, Register, RegisterEntry, Variant
from services.wallet.store import HeldCredential, WalletStore
from shared.clock import lab_clock
from shared.clients.verifier import VerifierClient
from shared.errors import SignLabError
from shared.eudi import (
    CLIENT_ID_PREFIX,
    PID_CLAIMS,
    PID_VCT,
    REQUEST_OBJECT_TYPE,
    SD_JWT_VC_FORMAT,
    X5C_JWS,
    claim_label,
    x509_hash_client_id,
)
from shared.flow import step
from shared.jose_keys import load_or_create_ec_key

__all__ = ["ClaimView", "Outcome", "Selection", "VerifierRequest", "Wallet", "WalletRequestError", "invocation_of"]

STEP_4 = step(4)
_NONCE = re.compile(r"^[A-Za-z0-9._~-]{16,}$")
"""A nonce of URL-safe characters (OpenID4VP §5.2) with at least ~96 bits; the wallet refuses less."""
_SUPPORTED_ENC = ("A128GCM", "A256GCM")
_VARIANTS: dict[str, Variant] = {"pid-expired": "expired", "pid-revoked": "revoked", "untrusted-provider": "untrusted"}


class WalletRequestError(SignLabError):
    """The wallet cannot use a verifier's request (bad invocation, bad request object)."""

    error = "invalid_request"
    status = 400
    default_description = "the wallet cannot use this request"


# -- what the wallet shows ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimView:
    """One claim of a PID as the person sees it."""

    name: str
    label: str
    value: Any

    @property
    def text(self) -> str:
        """The value as one line."""
        return ", ".join(map(str, self.value)) if isinstance(self.value, list) else str(self.value)


@dataclass(frozen=True)
class VerifierRequest:
    """A verifier's request after the wallet checked it (step 2 of the module docstring)."""

    invocation: str
    client_id: str
    request_uri: str
    verifier_name: str
    certificate_sha256: str
    response_uri: str
    response_mode: str
    nonce: str
    state: str | None
    query_id: str
    claim_paths: tuple[tuple[Any, ...], ...]
    purpose: str
    encryption_key: dict[str, Any] | None
    encryption_enc: str
    header: dict[str, Any] = field(repr=False)
    claims: dict[str, Any] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (kept while the request is on the wallet's screen)."""
        return {"invocation": self.invocation, "client_id": self.client_id, "request_uri": self.request_uri,
                "verifier_name": self.verifier_name, "certificate_sha256": self.certificate_sha256,
                "response_uri": self.response_uri, "response_mode": self.response_mode, "nonce": self.nonce,
                "state": self.state, "query_id": self.query_id, "claim_paths": [list(p) for p in self.claim_paths],
                "purpose": self.purpose, "encryption_key": self.encryption_key, "encryption_enc": self.encryption_enc,
                "header": self.header, "claims": self.claims}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifierRequest:
        """Inverse of :meth:`as_dict`."""
        return cls(data["invocation"], data["client_id"], data["request_uri"], data["verifier_name"],
                   data["certificate_sha256"], data["response_uri"], data["response_mode"], data["nonce"],
                   data.get("state"), data["query_id"], tuple(tuple(p) for p in data["claim_paths"]),
                   data["purpose"], data.get("encryption_key"), data["encryption_enc"], data["header"], data["claims"])

    @property
    def encrypted(self) -> bool:
        """Whether the answer is encrypted (``direct_post.jwt``)."""
        return self.response_mode == "direct_post.jwt"


@dataclass(frozen=True)
class Selection:
    """What a PID gives for one request: the claims disclosed, those the PID lacks, those kept back."""

    holder: str
    disclosed: tuple[ClaimView, ...]
    missing: tuple[str, ...]
    withheld: tuple[ClaimView, ...]

    @property
    def satisfiable(self) -> bool:
        """The PID has every claim the request asks for."""
        return not self.missing


@dataclass(frozen=True)
class Outcome:
    """What happened to a presentation (the headless API's answer)."""

    outcome: Literal["sent", "declined", "no answer"]
    holder: str
    faults: tuple[str, ...]
    disclosed: tuple[str, ...] = ()
    redirect_uri: str | None = None
    verifier_answer: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"outcome": self.outcome, "holder": self.holder, "faults": list(self.faults),
                "disclosed": list(self.disclosed), "redirect_uri": self.redirect_uri,
                "verifier_answer": self.verifier_answer}


def invocation_of(url: str) -> tuple[str, str]:
    """``(client_id, request_uri)`` of an invocation URL (``openid4vp://?…`` or the wallet's link).

    :raises WalletRequestError: a parameter is missing, or the request is passed by value (SignLab's
        wallet, like HAIP, takes signed requests by reference only).
    """
    query = parse_qs(urlsplit(url.strip()).query)
    client_id, request_uri = query.get("client_id", [""])[0], query.get("request_uri", [""])[0]
    if "request" in query:
        raise WalletRequestError("the request is passed by value; this wallet takes only signed requests by "
                                 "reference (request_uri)", step=STEP_4)
    if not client_id or not request_uri:
        raise WalletRequestError("the invocation needs client_id and request_uri (scan the QR code again, or paste "
                                 "the whole openid4vp:// link)", step=STEP_4)
    if not request_uri.startswith(("https://", "http://")):
        raise WalletRequestError(f"request_uri must be an http(s) URL, not {request_uri[:60]!r}", step=STEP_4)
    return client_id, request_uri


def _b64url_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _value_at(payload: Any, path: tuple[Any, ...]) -> tuple[bool, Any]:
    """Claims path pointer (OpenID4VP §7.1) over a processed payload: ``(found, value)``."""
    values = [payload]
    for part in path:
        following = []
        for value in values:
            if isinstance(part, str) and isinstance(value, dict) and part in value:
                following.append(value[part])
            elif part is None and isinstance(value, list):
                following.extend(value)
            elif isinstance(part, int) and not isinstance(part, bool) and isinstance(value, list) and 0 <= part < len(value):
                following.append(value[part])
        if not following:
            return False, None
        values = following
    return True, values[0] if len(values) == 1 and path and path[-1] is not None else values


def _disclosure_selection(paths: tuple[tuple[Any, ...], ...], payload: dict[str, Any]) -> dict[str, Any]:
    """The ``sd-jwt`` holder's selection structure for these claims paths (True = disclose; one entry
    per array element)."""
    selection: dict[str, Any] = {}
    for path in paths:
        node: Any = selection
        value: Any = payload
        for position, part in enumerate(path):
            last = position == len(path) - 1
            if isinstance(part, str):
                value = value[part]
                if last:
                    node[part] = [True] * len(value) if isinstance(value, list) else True
                else:
                    node = node.setdefault(part, [None] * len(value) if isinstance(value, list) else {})
            else:  # an array element (None: all of them)
                indexes = range(len(value)) if part is None else [part]
                for index in indexes:
                    node[index] = True
                break
    return selection


class Wallet:
    """The signer's wallet: PIDs of the test persons, their device keys, and presentations.

    :param store: credentials and requests on the screen.
    :param keys_dir: where the device keys live (one P-256 key per holder, mode 0600).
    :param provider: the lab PID provider (issues the PIDs, and the wrong ones for faults).
    :param verifier: the HTTP client that calls verifiers.
    """

    def __init__(self, store: WalletStore, keys_dir: Path, provider: PidProvider, verifier: VerifierClient) -> None:
        self.store = store
        self.keys_dir = keys_dir
        self.provider = provider
        self.verifier = verifier

    # -- credentials ------------------------------------------------------------------------------
    def device_key(self, holder: str) -> ECKey:
        """The device key of ``holder``'s PID (created on first use)."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", holder):
            raise WalletRequestError(f"{holder!r} is not a test person id")
        return load_or_create_ec_key(self.keys_dir / f"{holder}.pem")

    def provision(self, register: Register) -> list[str]:
        """Give every person of ``register`` without a PID a device key and a PID. Returns what was done."""
        issued = []
        for entry in register.entries:
            if self.store.credential(entry.id) is not None:
                continue
            public = self.device_key(entry.id).as_dict(private=False)
            pid = self.provider.issue(entry, public)
            self.store.put_credential(HeldCredential(entry.id, pid.sd_jwt, pid.status_index, pid.issued_at,
                                                     pid.expires_at))
            issued.append(entry.id)
        return issued

    def credential(self, holder: str) -> HeldCredential:
        """The PID of ``holder``.

        :raises WalletRequestError: the wallet holds no PID for this person.
        """
        held = self.store.credential(holder)
        if held is None:
            raise WalletRequestError(f"this wallet holds no PID for {holder!r}", error="access_denied", status=404,
                                     step=STEP_4)
        return held

    @staticmethod
    def payload(sd_jwt: str) -> dict[str, Any]:
        """The processed payload of a PID with all its disclosures (what the holder knows). The
        issuer signature is checked with the key of its own ``x5c`` leaf: the holder's check that
        the PID is intact, not a trust decision (that is the verifier's)."""
        header = _b64url_json(sd_jwt.split("~", 1)[0].split(".")[0])
        leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
        key = JWK.from_pyca(leaf.public_key())
        return dict(SDJWTVerifier(sd_jwt, lambda _iss, _header: key).get_verified_payload())

    def claims(self, holder: str) -> list[ClaimView]:
        """The PID's personal claims, in display order, for the wallet's credential list."""
        payload = self.payload(self.credential(holder).sd_jwt)
        return [ClaimView(name, claim_label(name), payload[name]) for name in PID_CLAIMS if name in payload]

    # -- a verifier's request ------------------------------------------------------------------------
    def fetch(self, invocation: str) -> VerifierRequest:
        """Fetch and check the request object named by ``invocation`` (module docstring, step 2).

        :raises WalletRequestError: the invocation or the request object is not acceptable.
        """
        client_id, request_uri = invocation_of(invocation)
        token = self.verifier.request_object(request_uri)
        try:
            compact = jws.extract_compact(token.encode("ascii"), registry=X5C_JWS)
        except (JoseError, ValueError, UnicodeError) as exc:
            raise WalletRequestError(f"the request object is not a signed JWT ({exc.__class__.__name__})", step=STEP_4) from None
        header = dict(compact.protected)
        if header.get("typ") != REQUEST_OBJECT_TYPE:
            raise WalletRequestError(f"the request object's typ is {header.get('typ')!r}, not {REQUEST_OBJECT_TYPE!r} "
                                     "(OpenID4VP §5)", step=STEP_4)
        if header.get("alg") != "ES256":
            raise WalletRequestError(f"the request object is signed with {header.get('alg')!r}; this wallet accepts ES256",
                                     step=STEP_4)
        prefix = client_id.split(":", 1)[0]
        if prefix != CLIENT_ID_PREFIX:
            raise WalletRequestError(f"client identifier prefix {prefix!r} is not supported (this wallet supports "
                                     f"{CLIENT_ID_PREFIX})", step=STEP_4)
        chain = header.get("x5c")
        if not isinstance(chain, list) or not chain:
            raise WalletRequestError("the request object has no x5c certificate (required by x509_hash)", step=STEP_4)
        leaf_der = base64.b64decode(chain[0])
        if x509_hash_client_id(leaf_der) != client_id:
            raise WalletRequestError("the x5c leaf certificate does not hash to the client_id (x509_hash, "
                                     "OpenID4VP §5.9.3)", step=STEP_4)
        leaf = x509.load_der_x509_certificate(leaf_der)
        now = lab_clock().now()
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise WalletRequestError("the verifier's certificate is not valid now", step=STEP_4)
        try:
            verified = jws.deserialize_compact(token, ECKey.import_key(leaf.public_key()), algorithms=["ES256"],
                                               registry=X5C_JWS)
            claims = json.loads(verified.payload)
        except (JoseError, ValueError) as exc:
            raise WalletRequestError(f"the request object's signature does not verify with its certificate "
                                     f"({exc.__class__.__name__})", step=STEP_4) from None
        return self._checked(invocation, client_id, request_uri, leaf, header, claims)

    def _checked(self, invocation: str, client_id: str, request_uri: str, leaf: x509.Certificate,
                 header: dict[str, Any], claims: dict[str, Any]) -> VerifierRequest:
        def refuse(text: str) -> WalletRequestError:
            return WalletRequestError(text, step=STEP_4)

        if claims.get("client_id") != client_id:
            raise refuse("the client_id inside the request object differs from the invocation's (RFC 9101 §5.2)")
        if claims.get("response_type") != "vp_token":
            raise refuse(f"response_type must be vp_token, not {claims.get('response_type')!r}")
        mode = claims.get("response_mode")
        if mode not in ("direct_post", "direct_post.jwt"):
            raise refuse(f"response_mode {mode!r} is not supported (direct_post, direct_post.jwt)")
        if "redirect_uri" in claims:
            raise refuse("redirect_uri must not be present with response_uri (OpenID4VP §8.2)")
        response_uri = claims.get("response_uri")
        if not isinstance(response_uri, str) or not response_uri.startswith(("https://", "http://")):
            raise refuse("the request object has no response_uri")
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not _NONCE.match(nonce):
            raise refuse("the nonce is missing, too short or has characters other than URL-safe ones (OpenID4VP §5.2)")
        query = claims.get("dcql_query")
        credentials = query.get("credentials") if isinstance(query, dict) else None
        if not isinstance(credentials, list) or len(credentials) != 1 or not isinstance(credentials[0], dict):
            raise refuse("the DCQL query must ask for exactly one credential (this wallet holds one PID)")
        wanted = credentials[0]
        vct_values = (wanted.get("meta") or {}).get("vct_values") or []
        if wanted.get("format") != SD_JWT_VC_FORMAT or PID_VCT not in vct_values:
            raise refuse(f"the DCQL query asks for {wanted.get('format')!r} {vct_values}; this wallet holds a "
                         f"{SD_JWT_VC_FORMAT} PID ({PID_VCT})")
        paths = []
        for claim in wanted.get("claims") or []:
            path = claim.get("path") if isinstance(claim, dict) else None
            if not isinstance(path, list) or not path:
                raise refuse("a DCQL claims query has no path")
            paths.append(tuple(path))
        if not paths:
            raise refuse("the DCQL query names no claim (this wallet never discloses a whole PID)")
        key, enc = None, "A128GCM"
        if mode == "direct_post.jwt":
            key, enc = self._encryption(claims.get("client_metadata") or {})
        common = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(common[0].value) if common else leaf.subject.rfc4514_string()
        return VerifierRequest(
            invocation=invocation, client_id=client_id, request_uri=request_uri, verifier_name=name,
            certificate_sha256=leaf.fingerprint(hashes.SHA256()).hex(), response_uri=response_uri, response_mode=mode,
            nonce=nonce, state=claims.get("state") if isinstance(claims.get("state"), str) else None,
            query_id=str(wanted.get("id") or "pid"), claim_paths=tuple(paths),
            purpose=str(claims.get("signlab_purpose") or "log in"), encryption_key=key, encryption_enc=enc,
            header={k: v for k, v in header.items() if k != "x5c"}, claims=claims)

    @staticmethod
    def _encryption(metadata: dict[str, Any]) -> tuple[dict[str, Any], str]:
        keys = (metadata.get("jwks") or {}).get("keys") or []
        usable = [k for k in keys if isinstance(k, dict) and k.get("use", "enc") == "enc" and k.get("kty") == "EC"
                  and k.get("crv") == "P-256" and k.get("alg") == "ECDH-ES" and k.get("kid")]
        if not usable:
            raise WalletRequestError("direct_post.jwt needs an ECDH-ES P-256 key with kid in client_metadata.jwks "
                                     "(OpenID4VP §8.3)", step=STEP_4)
        offered = metadata.get("encrypted_response_enc_values_supported") or ["A128GCM"]
        enc = next((e for e in offered if e in _SUPPORTED_ENC), None)
        if enc is None:
            raise WalletRequestError(f"none of the content encryption algorithms {offered} is supported "
                                     f"({', '.join(_SUPPORTED_ENC)})", step=STEP_4)
        return usable[0], enc

    def select(self, request: VerifierRequest, holder: str) -> Selection:
        """What ``holder``'s PID gives for ``request`` (DCQL §6.3: every claim of the query is needed)."""
        payload = self.payload(self.credential(holder).sd_jwt)
        disclosed, missing = [], []
        for path in request.claim_paths:
            found, value = _value_at(payload, path)
            name = str(path[0])
            if found:
                disclosed.append(ClaimView(name, claim_label(name), value))
            else:
                missing.append(name)
        shown = {c.name for c in disclosed} | set(missing)
        withheld = [ClaimView(n, claim_label(n), payload[n]) for n in PID_CLAIMS if n in payload and n not in shown]
        return Selection(holder, tuple(disclosed), tuple(missing), tuple(withheld))

    # -- the answer ---------------------------------------------------------------------------------------
    def respond(self, request: VerifierRequest, holder: str, *, approve: bool, faults: tuple[str, ...] = ()) -> Outcome:
        """Answer ``request`` as ``holder``: the presentation when approved (with the asked-for
        ``faults`` applied), an ``access_denied`` error when declined or when the PID cannot satisfy
        the request; nothing at all for the ``timeout`` fault.
        """
        if "timeout" in faults:
            return Outcome("no answer", holder, faults)
        selection = self.select(request, holder)
        if not approve or "decline" in faults or not selection.satisfiable:
            description = ("the person declined to share the PID" if not approve or "decline" in faults else
                           "the wallet holds no PID with the requested claims: " + ", ".join(selection.missing))
            form = {"error": "access_denied", "error_description": description}
            if request.state:
                form["state"] = request.state
            answer = self.verifier.send_response(request.response_uri, form)
            return Outcome("declined", holder, faults, (), _redirect(answer), answer)
        presentation, disclosed = self.presentation(request, holder, faults)
        body: dict[str, Any] = {"vp_token": {request.query_id: [presentation]}}
        if request.state:
            body["state"] = request.state
        if request.encrypted:
            assert request.encryption_key is not None
            key = request.encryption_key
            header = {"alg": key["alg"], "enc": request.encryption_enc, "kid": key["kid"]}
            form = {"response": jwe.encrypt_compact(header, json.dumps(body).encode(), ECKey.import_key(key))}
        else:
            form = {"vp_token": json.dumps(body["vp_token"]), **({"state": request.state} if request.state else {})}
        answer = self.verifier.send_response(request.response_uri, form)
        return Outcome("sent", holder, faults, disclosed, _redirect(answer), answer)

    def presentation(self, request: VerifierRequest, holder: str, faults: tuple[str, ...] = ()) -> tuple[str, tuple[str, ...]]:
        """The SD-JWT+KB (module docstring, step 4), with the faults that break it."""
        device = self.device_key(holder)
        variant = next((_VARIANTS[f] for f in faults if f in _VARIANTS), None)
        if variant is None:
            sd_jwt = self.credential(holder).sd_jwt
        else:
            entry_payload = self.payload(self.credential(holder).sd_jwt)
            sd_jwt = self.provider.issue(_entry_from(holder, entry_payload), device.as_dict(private=False),
                                         variant=variant).sd_jwt
        paths = request.claim_paths
        if "missing-claim" in faults:
            dropped = next((p for p in paths if p[0] == "personal_administrative_number"), paths[-1])
            paths = tuple(p for p in paths if p != dropped)
        nonce = "replayed-" + secrets.token_urlsafe(16) if "wrong-nonce" in faults else request.nonce
        audience = (f"{CLIENT_ID_PREFIX}:" + base64.urlsafe_b64encode(hashlib.sha256(b"another verifier").digest())
                    .rstrip(b"=").decode()) if "wrong-audience" in faults else request.client_id
        signing_key = ECKey.generate_key("P-256") if "kb-signature-invalid" in faults else device
        presenter = SDJWTHolder(sd_jwt)
        presenter.create_presentation(_disclosure_selection(paths, self.payload(sd_jwt)), nonce=nonce, aud=audience,
                                      holder_key=JWK(**signing_key.as_dict(private=True)), sign_alg="ES256")
        return presenter.sd_jwt_presentation, tuple(str(p[0]) for p in paths)


def _redirect(answer: dict[str, Any]) -> str | None:
    value = answer.get("redirect_uri")
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def _entry_from(holder: str, payload: dict[str, Any]) -> RegisterEntry:
    """The register entry behind a held PID (the provider re-issues from what it once issued)."""
    nationalities = payload.get("nationalities") or [payload.get("issuing_country", "")]
    return RegisterEntry(holder, payload["given_name"], payload["family_name"], payload["birthdate"],
                         str(nationalities[0]), payload.get("personal_administrative_number"))
