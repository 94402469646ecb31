"""Which PID providers the IPSP trusts, and whether a PID is still valid (Flask-free).

* **Trusted list** — the IdP reads the signed list of trusted PID providers from
  ``SIGNLAB_IDP_WALLET_TRUSTED_LIST_URL`` (the lab's stand-in for the EU list of trusted entities).
  The list is a compact JWS whose ``x5c`` carries the list operator's certificate; the first list
  read pins that certificate under ``<data_dir>/openid4vp/list-operator.pem`` and every later list
  must be signed by the same one (a real verifier gets the operator's certificate out of band). The
  list's ``trust_anchors`` are the PID providers' root certificates.
* **Chain** — a PID's ``x5c`` leaf (and intermediates) must chain to one of those anchors
  (SD-JWT VC §3.5: with ``x5c`` the issuer is the leaf's subject; the anchor is never in ``x5c``).
* **Status** — Token Status List §8.3: the token at the PID's ``status.status_list.uri`` is a JWT of
  ``typ`` ``statuslist+jwt`` whose ``sub`` is that URI, not expired, signed by a certificate of the
  same provider (same subject, chained to a trusted anchor: §11.3); the value at ``idx`` must be
  VALID; an index outside the list, or a list that cannot be read, rejects the PID.

Limits: the list is cached for :data:`LIST_CACHE_SECONDS`; the status list is read for every
presentation (no caching by ``ttl``: revocations show at once in the lab).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from shared.clock import lab_clock
from shared.clients.wallet import PidProviderClient
from shared.errors import SignLabError
from shared.eudi import TRUSTED_LIST_TYPE, X5C_JWS
from shared.lab_pki import VerificationError, verify_chain
from shared.status_list import TOKEN_TYPE, Status, StatusListError, status_at

__all__ = ["LIST_CACHE_SECONDS", "TrustProblem", "TrustedPidProviders", "certificates_of"]

LIST_CACHE_SECONDS = 60.0


class TrustProblem(Exception):
    """A PID's issuer or status cannot be trusted; ``check`` names the check that failed."""

    def __init__(self, check: str, description: str) -> None:
        super().__init__(description)
        self.check = check
        self.description = description


def certificates_of(header: dict[str, Any]) -> list[x509.Certificate]:
    """The certificates of a JOSE header's ``x5c`` (standard base64 DER, leaf first).

    :raises TrustProblem: no ``x5c``, or a certificate that does not decode.
    """
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain):
        raise TrustProblem("x5c", "the issuer-signed JWT has no x5c certificate chain")
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(c)) for c in chain]
    except ValueError as exc:
        raise TrustProblem("x5c", f"an x5c certificate does not decode ({exc})") from None


@dataclass(frozen=True)
class _List:
    anchors: tuple[x509.Certificate, ...]
    names: tuple[str, ...]
    read_at: float


class TrustedPidProviders:
    """The PID providers the IPSP trusts, from the signed list, and the status checks of their PIDs.

    :param list_url: where the signed list is published.
    :param pin_dir: where the list operator's certificate is pinned.
    """

    def __init__(self, list_url: str, pin_dir: Path, client: PidProviderClient) -> None:
        self.list_url = list_url
        self.pin_path = pin_dir / "list-operator.pem"
        self.client = client
        self._lock = threading.Lock()
        self._list: _List | None = None

    def _read_list(self) -> _List:
        try:
            token = self.client.trusted_providers(self.list_url)
        except SignLabError as exc:
            raise TrustProblem("trusted list", f"the list of trusted PID providers cannot be read: "
                                               f"{exc.error_description}") from None
        try:
            header = dict(jws.extract_compact(token.encode("ascii"), registry=X5C_JWS).protected)
        except (JoseError, ValueError, UnicodeError):
            raise TrustProblem("trusted list", "the list of trusted PID providers is not a compact JWS") from None
        if header.get("typ") != TRUSTED_LIST_TYPE:
            raise TrustProblem("trusted list", f"the list's typ is {header.get('typ')!r}, not {TRUSTED_LIST_TYPE!r}")
        operator = certificates_of(header)[0]
        pinned = self._pin(operator)
        try:
            verified = jws.deserialize_compact(token, ECKey.import_key(pinned.public_key()), algorithms=["ES256"],
                                               registry=X5C_JWS)
            body = json.loads(verified.payload)
            anchors, names = [], []
            for entity in body["entities"]:
                for anchor in entity["trust_anchors"]:
                    anchors.append(x509.load_der_x509_certificate(base64.b64decode(anchor)))
                    names.append(str(entity.get("name")))
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise TrustProblem("trusted list", f"the list of trusted PID providers does not verify with the "
                                               f"pinned operator certificate ({exc.__class__.__name__})") from None
        return _List(tuple(anchors), tuple(names), lab_clock().time())

    def _pin(self, operator: x509.Certificate) -> x509.Certificate:
        """The pinned list operator (the one presented now, on first use)."""
        if not self.pin_path.exists():
            self.pin_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.pin_path.write_bytes(operator.public_bytes(serialization.Encoding.PEM))
            return operator
        pinned = x509.load_pem_x509_certificate(self.pin_path.read_bytes())
        if pinned != operator:
            raise TrustProblem("trusted list", f"the list is signed by {operator.subject.rfc4514_string()}, not by "
                                               f"the pinned list operator ({self.pin_path}); a new lab trust framework "
                                               "needs a new IdP data directory or the pin removed")
        return pinned

    def anchors(self) -> tuple[tuple[x509.Certificate, ...], tuple[str, ...]]:
        """The trusted anchors and provider names (the list, cached for :data:`LIST_CACHE_SECONDS`)."""
        with self._lock:
            if self._list is None or lab_clock().time() - self._list.read_at > LIST_CACHE_SECONDS:
                self._list = self._read_list()
            return self._list.anchors, self._list.names

    def check_chain(self, chain: list[x509.Certificate], at: float) -> None:
        """``chain[0]`` (the PID provider's certificate) chains to a trusted anchor at ``at``.

        :raises TrustProblem: check ``trust chain``.
        """
        anchors, names = self.anchors()
        try:
            verify_chain(chain[0], chain[1:], anchors, at=dt.datetime.fromtimestamp(at, dt.UTC))
        except VerificationError as exc:
            raise TrustProblem("trust chain", f"the PID's issuer {chain[0].subject.rfc4514_string()} does not chain "
                                              f"to a trusted PID provider ({', '.join(names) or 'none listed'}): "
                                              f"{exc}") from None

    def check_status(self, reference: Any, issuer: x509.Certificate, at: float) -> None:
        """The PID's ``status`` claim: its Token Status List entry must be VALID (module docstring).

        :raises TrustProblem: check ``status``.
        """
        entry = reference.get("status_list") if isinstance(reference, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str) or not isinstance(entry.get("idx"), int):
            raise TrustProblem("status", "the PID has no status.status_list {idx, uri} (the lab requires revocable PIDs)")
        uri, index = entry["uri"], entry["idx"]
        try:
            token = self.client.status_list(uri)
            header = dict(jws.extract_compact(token.encode("ascii"), registry=X5C_JWS).protected)
        except SignLabError as exc:
            raise TrustProblem("status", f"the status list {uri} cannot be read: {exc.error_description}") from None
        except (JoseError, ValueError, UnicodeError):
            raise TrustProblem("status", f"the status list at {uri} is not a JWT") from None
        if header.get("typ") != TOKEN_TYPE:
            raise TrustProblem("status", f"the status list's typ is {header.get('typ')!r}, not {TOKEN_TYPE!r}")
        chain = certificates_of(header)
        if chain[0].subject != issuer.subject:
            raise TrustProblem("status", "the status list is signed by another party than the PID's issuer")
        self.check_chain(chain, at)
        try:
            claims = jwt.decode(token, ECKey.import_key(chain[0].public_key()), algorithms=["ES256"],
                                registry=X5C_JWS).claims
        except (JoseError, ValueError) as exc:
            raise TrustProblem("status", f"the status list's signature does not verify ({exc.__class__.__name__})") from None
        if claims.get("sub") != uri:
            raise TrustProblem("status", f"the status list's sub {claims.get('sub')!r} is not the PID's uri {uri!r}")
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires < at:
            raise TrustProblem("status", "the status list token has expired")
        try:
            value = status_at(claims.get("status_list"), index)
        except StatusListError as exc:
            raise TrustProblem("status", f"the PID's status cannot be read: {exc}") from None
        if value != Status.VALID:
            word = {Status.INVALID: "revoked (INVALID)", Status.SUSPENDED: "suspended"}.get(value, f"status {value}")
            raise TrustProblem("status", f"the PID provider's status list says the PID is {word}")
