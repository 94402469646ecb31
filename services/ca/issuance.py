"""Step 7 — the issuance API's checks, in order, each refusal logged. No Flask.

1. request shape (fields present, strings, profile ``qes``/``ades``) → 400 ``invalid_request``;
2. caller: RFC 7523 client assertion of the registered signing service, verified against its JWKS
   → 401 ``invalid_client``;
3. CSR: DER PKCS#10 in standard base64, signature verifies (proof of possession), key strong
   enough (EC P-256/384/521, RSA ≥ 2048) → 400 ``invalid_request``;
4. identity evidence: the IdP's ID token re-verified against the IdP's JWKS (signature, issuer,
   audience, expiry, age) → 403 ``access_denied``;
5. policy: QES only from LoA high with an eID approved for QES; AdES from substantial or high;
   a national identifier is needed for the serialNumber → 403 ``access_denied``. Never a downgrade.

Then the subject is built from the verified claims only (the CSR's subject is ignored) and the
certificate is issued. Every refusal is written to the issuance log with its reason code.

A ``request_id`` (chosen by the signing service, 1-128 characters) makes a request idempotent:
the same caller sending the same request id again (a retry after a lost answer) gets the
certificate already issued for it, once its CSR's key matches (else 409).

The signing service may also ask to revoke the certificates it was issued (by serial or by its
transaction id) when the flow they were for failed after step 7: :meth:`IssuanceService.revoke_issued`,
authenticated like issuance, and refused (logged) for anyone else's certificate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.ca.authority import REVOCATION_REASONS, CertificateAuthority, IssuedCertificate
from services.ca.errors import (
    STEP_7,
    BodyTooLarge,
    CaError,
    CallerRejected,
    CertificateNotFound,
    CsrRejected,
    EvidenceRejected,
    PolicyRefused,
    RequestConflict,
    RequestRejected,
)
from services.ca.faults import WRONG_KEY, substitute_public_key
from services.ca.profiles import Profile, SubjectIdentity
from services.ca.store import CertificateRecord
from shared.client_assertion import CLIENT_ASSERTION_TYPE, ReplayCache, verify_client_assertion
from shared.errors import InsufficientStorage, InvalidClient, SignLabError
from shared.faults import FaultBoard
from shared.flow import FlowStep
from shared.identity import IdentityEvidenceError, VerifiedIdentity, loa_rank, verify_id_token
from shared.remote_jwks import RemoteJwks

__all__ = ["ALLOWED_CURVES", "MIN_RSA_BITS", "IssuanceService", "certified_key", "parse_csr", "subject_from_identity"]

ALLOWED_CURVES = {"secp256r1", "secp384r1", "secp521r1"}
"""EC curves accepted in a CSR (ETSI TS 119 312)."""
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192


def parse_csr(text: object) -> x509.CertificateSigningRequest:
    """Decode, parse and check a CSR (standard base64 of DER PKCS#10).

    :raises CsrRejected: reasons ``csr_malformed``, ``csr_signature_invalid``, ``weak_key``,
        ``unsupported_key``.
    """
    if not isinstance(text, str) or not text:
        raise CsrRejected("csr_malformed", "csr must be a non-empty string: standard base64 of a DER PKCS#10 request")
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CsrRejected("csr_malformed", "csr is not standard base64") from None
    try:
        csr = x509.load_der_x509_csr(der)
        public_key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise CsrRejected("csr_malformed", f"csr is not a DER PKCS#10 request ({exc.__class__.__name__})") from None
    except x509.UnsupportedGeneralNameType:  # pragma: no cover - defensive
        raise CsrRejected("csr_malformed", "csr carries an unsupported name type") from None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ALLOWED_CURVES:
            raise CsrRejected("unsupported_key", f"EC curve {public_key.curve.name} is not accepted; use P-256, P-384 or P-521")
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise CsrRejected("weak_key", f"RSA key of {public_key.key_size} bits is too weak; at least {MIN_RSA_BITS}")
        if public_key.key_size > MAX_RSA_BITS:
            raise CsrRejected("unsupported_key", f"RSA key of {public_key.key_size} bits is larger than {MAX_RSA_BITS}")
    else:
        raise CsrRejected("unsupported_key", f"{type(public_key).__name__.removeprefix('_')} keys are not accepted; "
                          "use EC P-256/P-384/P-521 or RSA >= 2048")
    if not valid:
        raise CsrRejected("csr_signature_invalid", "the CSR signature does not verify with its public key "
                          "(no proof of possession of the private key)")
    return csr


def certified_key(csr: x509.CertificateSigningRequest) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key of a request :func:`parse_csr` accepted, typed as the kinds it accepts.

    :raises CsrRejected: ``unsupported_key`` — neither EC nor RSA (a request that skipped :func:`parse_csr`).
    """
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise CsrRejected("unsupported_key", f"{type(public_key).__name__.removeprefix('_')} keys are not accepted")
    return public_key


def subject_from_identity(identity: VerifiedIdentity) -> SubjectIdentity:
    """The certificate subject from the verified claims (C, GN, SN, serialNumber; CN derived).

    :raises PolicyRefused: ``identity_incomplete`` — a name or the national identifier is missing.
    """
    try:
        serial_number = identity.etsi_serial_number()
    except IdentityEvidenceError as exc:
        raise PolicyRefused("identity_incomplete", exc.description) from None
    missing = [name for name, value in (("given_name", identity.given_name), ("family_name", identity.family_name),
                                        ("country", identity.country)) if not value]
    if missing:
        raise PolicyRefused("identity_incomplete", f"the verified identity lacks {', '.join(missing)}")
    country = str(identity.country).upper()
    if len(country) != 2 or not country.isalpha():
        raise PolicyRefused("identity_incomplete", f"country {identity.country!r} is not an ISO 3166 alpha-2 code")
    return SubjectIdentity(country=country, given_name=str(identity.given_name),
                           family_name=str(identity.family_name), serial_number=serial_number)


def check_policy(profile: Profile, identity: VerifiedIdentity) -> None:
    """Enforce the certificate-type rule; never downgrade.

    :raises PolicyRefused: ``loa_too_low`` or ``eid_not_qes_approved``.
    """
    if profile is Profile.QES:
        if identity.loa != "high":
            raise PolicyRefused("loa_too_low", f"profile qes needs an eID at LoA high; {identity.eid_name!r} gave "
                                f"{identity.loa} (ask for profile ades, or authenticate with a high eID)")
        if not identity.qes_approved:
            raise PolicyRefused("eid_not_qes_approved", f"the eID means {identity.eid_name!r} is not approved for "
                                "qualified certificates (QES)")
    elif loa_rank(identity.loa) < loa_rank("substantial"):
        raise PolicyRefused("loa_too_low", f"profile ades needs LoA substantial or high; {identity.eid_name!r} gave "
                            f"{identity.loa}")


@dataclass
class IssuanceService:
    """Runs the step-7 checks and issues through a :class:`CertificateAuthority`."""

    authority: CertificateAuthority
    signer_keys: RemoteJwks
    idp_keys: RemoteJwks
    replay_cache: ReplayCache
    pseudonym_key: bytes
    faults: FaultBoard | None = None
    """Lab fault injection (``wrong-key``); None unless ``SIGNLAB_CA_FAULTS_ENABLED``."""

    def subject_id(self, serial_number: str) -> str:
        """Pseudonymised subject id for logs: HMAC-SHA-256 of the serialNumber under the CA's key."""
        return "ps-" + hmac.new(self.pseudonym_key, serial_number.encode("utf-8"), hashlib.sha256).hexdigest()[:24]

    @property
    def audience(self) -> str:
        """The ``aud`` client assertions must carry: the issuance endpoint's URL."""
        return f"{self.authority.settings.base_url}/api/v1/certificates"

    @property
    def revocation_audience(self) -> str:
        """The ``aud`` of client assertions for revocation requests: that endpoint's URL."""
        return f"{self.authority.settings.base_url}/api/v1/certificates/revocations"

    def refuse_oversized(self, size: int | None) -> BodyTooLarge:
        """Log and return the refusal of a body larger than the issuance endpoint accepts."""
        limit = self.authority.settings.issuance_max_body_bytes
        error = BodyTooLarge("body_too_large", f"the body ({size if size is not None else 'more than ' + str(limit)} "
                             f"bytes) exceeds the {limit} bytes this endpoint accepts")
        self.authority.log.refused(error=error.error, reason=error.reason, description=error.description,
                                   requester="unauthenticated", profile=None, transaction_id=None)
        return error

    def issue(self, body: Any) -> IssuedCertificate:
        """Check and serve one issuance request (the parsed JSON body).

        :raises CaError: a refusal (already logged); nothing was issued.
        """
        context: dict[str, Any] = {"requester": "unauthenticated", "profile": None, "transaction_id": None}
        try:
            return self._issue(body, context)
        except InsufficientStorage:
            raise  # the log cannot be written: there is no refusal entry to add
        except SignLabError as exc:
            reason = exc.reason if isinstance(exc, CaError) else getattr(exc, "check", exc.error)
            self.authority.log.refused(error=exc.error, reason=str(reason), description=exc.description,
                                       requester=context["requester"], profile=context["profile"],
                                       transaction_id=context["transaction_id"], subject_id=context.get("subject_id"),
                                       loa=context.get("loa"))
            raise

    def _issue(self, body: Any, context: dict[str, Any]) -> IssuedCertificate:
        settings = self.authority.settings
        if not isinstance(body, Mapping):
            raise RequestRejected("body_not_json_object", "the body must be a JSON object")
        profile_text = body.get("profile")
        if isinstance(profile_text, str):
            context["profile"] = profile_text[:16]
        transaction_id = _optional_text(body, "transaction_id", 128)
        context["transaction_id"] = transaction_id
        request_id = _optional_text(body, "request_id", 128)

        # 2. caller authentication (before looking at anything costly or personal)
        context["requester"] = self._authenticate(body, self.audience)
        # 1. the rest of the request shape
        try:
            profile = Profile(str(profile_text))
        except ValueError:
            raise RequestRejected("profile_invalid", f"profile must be 'qes' or 'ades', not {profile_text!r}") from None
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise RequestRejected("id_token_missing", "id_token (the identity evidence from the IdP) is missing")

        # 3. CSR and proof of possession
        csr = parse_csr(body.get("csr"))
        if request_id is not None:
            first = self.authority.store.by_request(context["requester"], request_id)
            if first is not None:  # a retry: the answer it lost, not a second certificate
                if _spki(x509.load_der_x509_certificate(first.der).public_key()) != _spki(csr.public_key()):
                    raise RequestConflict("request_id_reused", f"request_id {request_id!r} was already used for "
                                          "another key")
                return self.authority.issued_from(first)

        # 4. identity evidence
        try:
            identity = verify_id_token(id_token, self.idp_keys.key_set_for(id_token), issuer=settings.idp_url,
                                       audience=settings.idp_audience, leeway=settings.clock_leeway_seconds,
                                       max_token_age=settings.id_token_max_age_seconds)
        except IdentityEvidenceError as exc:
            raise EvidenceRejected(f"id_token_{exc.check}", exc.description) from None
        context["loa"] = identity.loa

        # 5. policy, then the subject from verified claims only
        subject = subject_from_identity(identity)
        context["subject_id"] = self.subject_id(subject.serial_number)
        check_policy(profile, identity)
        public_key = certified_key(csr)
        if self.faults is not None and self.faults.fire(WRONG_KEY, transaction_id=transaction_id):
            public_key = substitute_public_key()  # lab fault: certify a key other than the CSR's
        return self.authority.issue(public_key=public_key, subject=subject, profile=profile,
                                    subject_id=context["subject_id"], loa=identity.loa,
                                    requester=context["requester"], transaction_id=transaction_id or "",
                                    request_id=request_id)

    def _authenticate(self, body: Mapping[str, Any], audience: str) -> str:
        """Verify the RFC 7523 client assertion of the registered signing service; its client id.

        :raises CallerRejected: missing, invalid, replayed, or another client.
        """
        settings = self.authority.settings
        if body.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise CallerRejected("client_assertion_missing",
                                 f"client_assertion_type must be {CLIENT_ASSERTION_TYPE} with a client_assertion")
        assertion = body.get("client_assertion")
        if not isinstance(assertion, str) or not assertion:
            raise CallerRejected("client_assertion_missing", "client_assertion is missing")
        try:
            verify_client_assertion(assertion, self.signer_keys.key_set_for(assertion),
                                    client_id=settings.signer_client_id, audience=audience,
                                    replay_cache=self.replay_cache, leeway=settings.clock_leeway_seconds)
        except InvalidClient as exc:
            raise CallerRejected("unknown_caller", exc.description) from None
        return settings.signer_client_id

    def revoke_issued(self, body: Any) -> list[CertificateRecord]:
        """Revoke, for the authenticated signing service, the certificates it was issued with
        ``serial`` and/or for its ``transaction_id`` (a flow that failed after step 7).

        Body: ``client_assertion_type``, ``client_assertion`` (``aud`` = :attr:`revocation_audience`),
        ``serial`` (hex) and/or ``transaction_id``, ``reason`` (RFC 5280 name, default
        ``cessationOfOperation``), ``note`` (why, at most 200 characters). Idempotent: an already
        revoked certificate keeps its first revocation.

        :raises CaError: a refusal (logged as ``revocation.refused``); 404 when no certificate of
            this caller matches.
        """
        requester = "unauthenticated"
        try:
            if not isinstance(body, Mapping):
                raise RequestRejected("body_not_json_object", "the body must be a JSON object", step=None)
            requester = self._authenticate(body, self.revocation_audience)
            reason = body.get("reason", "cessationOfOperation")
            if reason not in REVOCATION_REASONS:
                raise RequestRejected("reason_invalid", f"reason must be one of {', '.join(REVOCATION_REASONS)}",
                                      step=None)
            serial_text = _optional_text(body, "serial", 40, step=None)
            transaction_id = _optional_text(body, "transaction_id", 128, step=None)
            note = _optional_text(body, "note", 200, step=None)
            if serial_text is None and transaction_id is None:
                raise RequestRejected("target_missing", "name the certificate: serial and/or transaction_id", step=None)
            try:
                serial = int(serial_text, 16) if serial_text is not None else None
            except ValueError:
                raise RequestRejected("serial_invalid", f"serial {(serial_text or '')[:40]!r} is not hexadecimal",
                                      step=None) from None
            revoked = self.authority.revoke_issued_to(requester, serial=serial, transaction_id=transaction_id,
                                                      reason=str(reason), note=note)
            if not revoked:
                raise CertificateNotFound("certificate_not_found", "no certificate issued to this client matches "
                                          f"serial {serial_text} / transaction {transaction_id}", step=None)
            return revoked
        except InsufficientStorage:
            raise
        except SignLabError as exc:
            self.authority.log.revocation_refused(error=exc.error, reason=str(getattr(exc, "reason", exc.error)),
                                                  description=exc.description, requester=requester)
            raise


def _optional_text(body: Mapping[str, Any], name: str, limit: int, step: FlowStep | None = STEP_7) -> str | None:
    """``body[name]``: absent (None) or a string of 1-``limit`` characters.

    :raises RequestRejected: another type or length (named at ``step``).
    """
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= limit):
        raise RequestRejected(f"{name}_invalid", f"{name} must be a string of 1-{limit} characters", step=step)
    return value


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
