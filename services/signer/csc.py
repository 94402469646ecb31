"""Parsing of CSC and RAR inputs: digests, hash algorithms, authorization details, field spellings,
and the typed request objects the HTTP layer hands to the core (one per CSC method).

Rules (docs/design.md §3): JSON carries standard base64, query parameters carry
base64url; both alphabets are accepted, padded or not, and digests are compared as raw bytes.
v1 and v2 spellings are both accepted (``hash``/``hashes``, ``hashAlgo``/``hashAlgorithmOID``,
``AdES-B-B``/``Ades-B-B``, RAR type ``credential`` and its URI form).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.signer.errors import UnsupportedAlgorithm, WholeDocumentRefused
from services.signer.hsm import DIGEST_SIZES
from services.signer.levels import LEVEL_NAMES, check_produced
from services.signer.settings import QUALIFIERS
from services.signer.signing import HASH_OIDS
from shared.errors import InvalidRequest
from shared.flow import FlowStep
from shared.flow import step as flow_step

__all__ = [
    "CERTIFICATE_CHOICES",
    "CONFORMANCE_LEVELS",
    "RAR_TYPES",
    "SIGNATURE_FORMATS",
    "SIGN_ALGO_HASH",
    "AuthorizationDetail",
    "CredentialInfoRequest",
    "CredentialsAuthorizeRequest",
    "CredentialsListRequest",
    "DocumentDigest",
    "DocumentToSign",
    "ExtendTransactionRequest",
    "SignDocRequest",
    "SignHashRequest",
    "TimestampRequest",
    "decode_digest",
    "first",
    "hash_algorithm",
    "key_algorithms",
    "parse_authorization_details",
    "parse_digest_list",
    "refuse_documents",
]

RAR_TYPES = ("credential", "https://cloudsignatureconsortium.org/2025/credential")
"""Accepted ``authorization_details`` types (the short form and the CSC URI form)."""
SIGNATURE_FORMATS = ("C", "P", "J")
"""Supported ``signature_format`` values (CAdES, PAdES, JAdES; XAdES is not offered)."""
CONFORMANCE_LEVELS = tuple(LEVEL_NAMES)
"""The CSC ``conformance_level`` values, lower-cased (:mod:`services.signer.levels` says which are produced)."""

_B64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")


def first(body: Mapping[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` present in ``body`` (v1/v2 spellings), or ``None``."""
    for name in names:
        if name in body and body[name] is not None:
            return body[name]
    return None


def hash_algorithm(oid: Any, *, step: FlowStep | None = None, required: bool = True) -> str | None:
    """The hash algorithm name (``sha256`` …) of a CSC hash OID.

    :raises UnsupportedAlgorithm: an unknown or weak algorithm.
    :raises InvalidRequest: missing when ``required``.
    """
    if oid is None or oid == "":
        if required:
            raise InvalidRequest("hashAlgorithmOID (hashAlgo) is required", step=step)
        return None
    if not isinstance(oid, str) or oid not in HASH_OIDS:
        raise UnsupportedAlgorithm(
            f"unsupported hash algorithm {str(oid)[:64]!r}; supported: {', '.join(HASH_OIDS)} (SHA-256/384/512)",
            step=step)
    return HASH_OIDS[oid]


def decode_digest(text: Any, algorithm: str | None, *, step: FlowStep | None = None) -> bytes:
    """Decode one digest given in base64 or base64url (padded or not) and check its length.

    :raises InvalidRequest: not a string, not base64, or the wrong length for ``algorithm``.
    """
    if not isinstance(text, str) or not text or len(text) > 200 or not _B64.match(text):
        raise InvalidRequest("invalid base64 in a hash value", step=step)
    normalized = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        raw = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("invalid base64 in a hash value", step=step) from None
    if algorithm is not None and len(raw) != DIGEST_SIZES[algorithm]:
        raise InvalidRequest(
            f"Invalid digest value length: {algorithm} needs {DIGEST_SIZES[algorithm]} bytes, got {len(raw)}", step=step)
    if algorithm is None and len(raw) not in DIGEST_SIZES.values():
        raise InvalidRequest(f"Invalid digest value length: {len(raw)} bytes", step=step)
    return raw


def parse_digest_list(value: Any, algorithm: str | None, *, step: FlowStep | None = None,
                      max_count: int = 100) -> list[bytes]:
    """A JSON list of base64 digests, or a comma-separated base64url string (query form)."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("hash values are required (a non-empty list)", step=step)
    if len(value) > max_count:
        raise InvalidRequest(f"at most {max_count} hash values are allowed, got {len(value)}", step=step)
    return [decode_digest(v, algorithm, step=step) for v in value]


def refuse_documents(body: Mapping[str, Any], *, step: FlowStep | None = None) -> None:
    """Refuse a request that carries whole documents (the service accepts digests only)."""
    if first(body, "documents", "document", "Documents") is not None:
        raise WholeDocumentRefused(step=step)


@dataclass(frozen=True)
class DocumentDigest:
    """One authorized document digest (raw bytes) and its label."""

    digest: bytes
    label: str


@dataclass(frozen=True)
class AuthorizationDetail:
    """A parsed RAR ``authorization_details`` entry of type ``credential``.

    :ivar qualifier: ``eu_eidas_qes`` or ``eu_eidas_aes`` (``None`` when a credentialID is named).
    :ivar credential_id: an existing credential (certificate-first flow), or ``None``.
    :ivar hash_algorithm: ``sha256`` …
    :ivar documents: the digests with labels (their count is the number of signatures).
    :ivar raw: the entry as received (echoed in the token response).
    """

    qualifier: str | None
    credential_id: str | None
    hash_algorithm: str
    documents: tuple[DocumentDigest, ...]
    raw: dict[str, Any]


def _json_objects(text: Any, *, step: FlowStep | None) -> list[dict[str, Any]]:
    """The ``authorization_details`` value as a non-empty list of JSON objects (one object is a list of one)."""
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidRequest("authorization_details is not valid JSON", step=step) from None
    else:
        value = text
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise InvalidRequest("authorization_details must be a JSON array of objects", step=step)
    return value


def _document_digests(items: Any, algorithm: str, *, step: FlowStep | None,
                      max_documents: int) -> tuple[DocumentDigest, ...]:
    """``documentDigests``: 1 to ``max_documents`` distinct ``{hash, label}`` objects."""
    if not isinstance(items, list) or not items:
        raise InvalidRequest("authorization_details.documentDigests must be a non-empty list", step=step)
    if len(items) > max_documents:
        raise InvalidRequest(f"at most {max_documents} documents per transaction, got {len(items)}", step=step)
    documents = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidRequest("each documentDigests entry must be an object {hash, label}", step=step)
        refuse_documents(item, step=step)
        label = item.get("label", "")
        if not isinstance(label, str) or len(label) > 200:
            raise InvalidRequest("a document label must be a string of at most 200 characters", step=step)
        documents.append(DocumentDigest(decode_digest(item.get("hash"), algorithm, step=step), label))
    if len({d.digest for d in documents}) != len(documents):
        raise InvalidRequest("documentDigests contains the same digest twice", step=step)
    return tuple(documents)


def _credential_detail(entry: dict[str, Any], *, step: FlowStep | None, max_documents: int) -> AuthorizationDetail:
    """One ``authorization_details`` entry of type ``credential``."""
    if entry.get("type") not in RAR_TYPES:
        raise InvalidRequest(
            f"unsupported authorization_details type {str(entry.get('type'))[:80]!r}; expected 'credential'",
            step=step)
    refuse_documents(entry, step=step)
    qualifier = entry.get("signatureQualifier")
    credential_id = entry.get("credentialID")
    if qualifier is None and credential_id is None:
        raise InvalidRequest("authorization_details needs signatureQualifier or credentialID", step=step)
    if qualifier is not None and qualifier not in QUALIFIERS:
        raise InvalidRequest(f"unsupported signatureQualifier {str(qualifier)[:40]!r}; "
                             f"supported: {', '.join(QUALIFIERS)}", step=step)
    algorithm = hash_algorithm(first(entry, "hashAlgorithmOID", "hashAlgo"), step=step)
    if algorithm is None:
        raise InvalidRequest("hashAlgorithmOID is required", step=step)
    documents = _document_digests(entry.get("documentDigests"), algorithm, step=step, max_documents=max_documents)
    number = entry.get("numSignatures")
    if number is not None and number != len(documents):
        raise InvalidRequest(f"numSignatures {number!r} differs from the number of documentDigests "
                             f"({len(documents)})", step=step)
    return AuthorizationDetail(qualifier, credential_id, algorithm, documents, entry)


def parse_authorization_details(text: Any, *, step: FlowStep | None = None, max_documents: int = 20) -> list[AuthorizationDetail]:
    """Parse the JSON ``authorization_details`` parameter (RFC 9396) into credential entries.

    :raises InvalidRequest: not JSON, not a list of objects, an unknown type, a bad qualifier,
        missing or malformed digests, too many documents.
    """
    details = [_credential_detail(entry, step=step, max_documents=max_documents)
               for entry in _json_objects(text, step=step)]
    if len(details) != 1:
        raise InvalidRequest("exactly one authorization_details entry of type credential is supported", step=step)
    return details


def key_algorithms(is_ec: bool) -> list[str]:
    """``key.algo`` of a credential: the key OID and the combined signature OIDs pyHanko looks for."""
    if is_ec:
        return ["1.2.840.10045.2.1", "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"]
    return ["1.2.840.113549.1.1.1", "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13"]


SIGN_ALGO_HASH: dict[str, str | None] = {
    "1.2.840.10045.2.1": None, "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512", "1.2.840.113549.1.1.1": None, "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384", "1.2.840.113549.1.1.13": "sha512",
}
"""The hash a combined ``signAlgo`` implies (``None``: the bare key OID; ``hashAlgo`` then decides)."""


# ---------------------------------------------------------------------------- typed request bodies
# The HTTP layer validates each body against the method's published JSON schema
# (services.signer.openapi), lets the SAM check the bearer token, and then parses the body here,
# once, into one of these objects: the core never sees a dict body and never checks a spelling, a
# base64 value or an OID again. What needs the service's state (the token, the credential, the
# authorized digests) is the SAM's (services.signer.sam). Each parser names the flow step its
# refusals belong to; the schema has already checked the types and required fields it reads.


@dataclass(frozen=True)
class DocumentToSign:
    """One digest of a ``signDoc`` request and how its signature object is packaged (steps 8-9).

    :ivar signature_format: ``C`` (CAdES), ``P`` (PAdES) or ``J`` (JAdES).
    :ivar conformance_level: lower-cased (``ades-b-b`` …), one this service produces for the format.
    :ivar sign_algo: the requested ``signAlgo``, or ``None`` (the one-time key decides).
    :ivar envelope: the ``signed_envelope_property`` made (``Detached``, ``Certification``, ``Revision``).
    """

    digest: bytes
    hash_algorithm: str
    signature_format: str
    conformance_level: str
    sign_algo: str | None
    envelope: str = "Detached"

    @property
    def time_stamped(self) -> bool:
        """B-T or above: the signature value gets a signature time-stamp."""
        return self.conformance_level != "ades-b-b"

    @property
    def long_term(self) -> bool:
        """B-LT: the CMS carries its validation data."""
        return self.conformance_level == "ades-b-lt"


def _document_entry(item: dict[str, Any], *, max_documents: int, step: FlowStep) -> list[DocumentToSign]:
    """One ``documentDigests`` entry: its digests with what is asked of them, refused unless this
    service makes exactly that (never a lower level, another algorithm or envelope)."""
    if item.get("signAlgoParams"):
        raise UnsupportedAlgorithm("signAlgoParams (RSASSA-PSS) is not supported", step=step)
    if item.get("signed_props"):
        raise InvalidRequest("Invalid parameter signed_props: no signed attributes are added on request "
                             "(the partner builds them in certificate-first signing)", step=step)
    fmt = str(item.get("signature_format", "")).upper()
    if fmt not in SIGNATURE_FORMATS:
        raise UnsupportedAlgorithm(f"signature_format must be one of C, P, J; got {fmt[:8]!r}", step=step)
    sign_algo = item.get("signAlgo")
    implied = SIGN_ALGO_HASH.get(sign_algo) if isinstance(sign_algo, str) else None
    given = hash_algorithm(first(item, "hashAlgorithmOID", "hashAlgo"), required=implied is None, step=step)
    if implied is not None and given is not None and implied != given:
        raise UnsupportedAlgorithm(f"hashAlgorithmOID ({given}) contradicts signAlgo ({implied})", step=step)
    algorithm = given or implied or "sha256"  # one of the two is there: hash_algorithm required it otherwise
    if fmt == "J" and implied not in (None, "sha256"):
        raise UnsupportedAlgorithm(f"signAlgo {sign_algo} is not produced for JAdES: its JWS is ES256 or RS256", step=step)
    level = str(item.get("conformance_level", "Ades-B-B")).lower()
    envelope = check_produced(fmt, level, item.get("signed_envelope_property"), step=step)
    digests = parse_digest_list(first(item, "hashes", "hash"), algorithm, step=step, max_count=max_documents)
    return [DocumentToSign(digest, algorithm, fmt, level, sign_algo, envelope) for digest in digests]


@dataclass(frozen=True)
class SignDocRequest:
    """CSC v2 ``signatures/signDoc`` with a one-time key (steps 6-10).

    :ivar qualifier: ``signatureQualifier`` when given (the SAM checks it is the authorized one).
    :ivar documents: every digest of every ``documentDigests`` entry, in request order.
    :ivar return_validation_info: CSC ``returnValidationInfo`` (CRL and OCSP for B-LT).
    """

    qualifier: str | None
    documents: tuple[DocumentToSign, ...]
    return_validation_info: bool = False

    @classmethod
    def parse(cls, body: dict[str, Any], *, max_documents: int) -> SignDocRequest:
        """Parse a schema-valid body; refusals are at step 6 (nothing was created yet).

        :raises InvalidRequest: a credentialID or SAD in the body, a whole document, bad base64 or
            digest length, an unknown conformance level, too many digests.
        :raises UnsupportedAlgorithm: an unknown hash algorithm or signature format.
        """
        s6 = flow_step(6)
        if body.get("credentialID"):
            raise InvalidRequest("the one-time key flow takes no credentialID; use signatureQualifier", step=s6)
        if body.get("SAD") not in (None, ""):
            raise InvalidRequest("signDoc takes the credential access token as SAD; omit SAD", step=s6)
        if body.get("operationMode", "S") != "S":
            raise InvalidRequest("Invalid parameter operationMode: only S (synchronous) is offered "
                                 "(info: asynchronousOperationMode false)", step=s6)
        documents: list[DocumentToSign] = []
        for item in body["documentDigests"]:
            refuse_documents(item, step=s6)
            documents += _document_entry(item, max_documents=max_documents, step=s6)
        return cls(body.get("signatureQualifier"), tuple(documents), bool(body.get("returnValidationInfo", False)))


@dataclass(frozen=True)
class SignHashRequest:
    """CSC ``signatures/signHash`` (v1 and v2): DTBS/R hashes for a credential (steps 8-9).

    :ivar sad: the SAD from the body; ``None`` when a v2 credential token in the header is the SAD.
    :ivar hash_algorithm: implied by a combined ``signAlgo`` or given as ``hashAlgo``/``hashAlgorithmOID``.
    """

    credential_id: str
    sad: str | None
    sign_algo: str
    hash_algorithm: str
    digests: tuple[bytes, ...]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> SignHashRequest:
        """Parse a schema-valid body; refusals are at step 9.

        :raises UnsupportedAlgorithm: ``signAlgoParams``, an unknown hash, a hash that contradicts
            the combined ``signAlgo``.
        :raises InvalidRequest: no hash algorithm where ``signAlgo`` implies none, bad hashes.
        """
        s9 = flow_step(9)
        sign_algo = body["signAlgo"]
        if body.get("signAlgoParams"):
            raise UnsupportedAlgorithm("signAlgoParams (RSASSA-PSS) is not supported", step=s9)
        implied = SIGN_ALGO_HASH.get(sign_algo)
        given = hash_algorithm(first(body, "hashAlgorithmOID", "hashAlgo"), required=implied is None, step=s9)
        if implied is not None and given is not None and implied != given:
            raise UnsupportedAlgorithm(f"hashAlgo {given} contradicts signAlgo ({implied})", step=s9)
        algorithm = implied or given
        if algorithm is None:
            raise InvalidRequest("hashAlgo (or a signAlgo that implies it) is required", step=s9)
        digests = parse_digest_list(first(body, "hashes", "hash"), algorithm, step=s9)
        return cls(body["credentialID"], body.get("SAD") or None, sign_algo, algorithm, tuple(digests))


@dataclass(frozen=True)
class CredentialsAuthorizeRequest:
    """CSC ``credentials/authorize`` (SCAL 2): a SAD for these hashes of a credential (step 2).

    :ivar hash_algorithm: ``None`` when the client names none (any digest length is accepted).
    """

    credential_id: str
    num_signatures: int
    hash_algorithm: str | None
    digests: tuple[bytes, ...]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CredentialsAuthorizeRequest:
        """Parse a schema-valid body; refusals are at step 2."""
        s2 = flow_step(2)
        number = body["numSignatures"]
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise InvalidRequest("numSignatures must be a positive integer", step=s2)
        algorithm = hash_algorithm(first(body, "hashAlgorithmOID", "hashAlgo"), required=False, step=s2)
        digests = parse_digest_list(first(body, "hashes", "hash"), algorithm, step=s2)
        return cls(body["credentialID"], number, algorithm, tuple(digests))


@dataclass(frozen=True)
class ExtendTransactionRequest:
    """CSC v1 ``credentials/extendTransaction``: a fresh SAD in place of ``sad``, for new hashes.

    :ivar digests: the new hashes (any SHA-2 length here; the SAM checks them against the old
        SAD's algorithm), or empty: the old SAD's hashes carry over.
    """

    credential_id: str
    sad: str
    digests: tuple[bytes, ...]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ExtendTransactionRequest:
        """Parse a schema-valid body."""
        hashes = first(body, "hashes", "hash")
        digests = parse_digest_list(hashes, None) if hashes else []
        return cls(body["credentialID"], body["SAD"], tuple(digests))


CERTIFICATE_CHOICES = ("none", "single", "chain")
"""CSC ``certificates``: which certificates ``credentials/info`` returns."""


@dataclass(frozen=True)
class CredentialInfoRequest:
    """CSC ``credentials/info`` (and the per-credential options of ``credentials/list``).

    :ivar credential_id: ``None`` in ``credentials/list``.
    """

    credential_id: str | None
    certificates: str = "single"
    cert_info: bool = False

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CredentialInfoRequest:
        """Parse a schema-valid body (pyHanko sends ``certificates: chain``, ``certInfo: false``)."""
        which = body.get("certificates", "single")
        if which not in CERTIFICATE_CHOICES:
            raise InvalidRequest("certificates must be none, single or chain")
        return cls(body.get("credentialID"), which, bool(body.get("certInfo")))


@dataclass(frozen=True)
class CredentialsListRequest:
    """CSC ``credentials/list``: the one-time credentials of the token's transaction.

    :ivar with_info: v2 ``credentialInfo``: each credential's info too, with ``info``'s options.
    """

    only_valid: bool
    with_info: bool
    info: CredentialInfoRequest

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CredentialsListRequest:
        """Parse a schema-valid (possibly empty) body.

        :raises InvalidRequest: a ``userID`` (the token already names the user).
        """
        if body.get("userID") is not None:
            raise InvalidRequest("userID must be absent: the token is user-specific")
        with_info = bool(body.get("credentialInfo"))
        info = CredentialInfoRequest.parse({k: v for k, v in body.items() if k != "credentialID"}) if with_info \
            else CredentialInfoRequest(None)
        return cls(bool(body.get("onlyValid")), with_info, info)


@dataclass(frozen=True)
class TimestampRequest:
    """CSC ``signatures/timestamp``: an RFC 3161 time-stamp over one hash (step 10)."""

    hash_algorithm: str
    digest: bytes
    nonce: int | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> TimestampRequest:
        """Parse a schema-valid body; refusals are at step 10.

        :raises InvalidRequest: no hash algorithm, a bad hash, a nonce that is not hex (≤ 64 digits).
        """
        s10 = flow_step(10)
        algorithm = hash_algorithm(first(body, "hashAlgorithmOID", "hashAlgo"), step=s10)
        if algorithm is None:
            raise InvalidRequest("hashAlgorithmOID is required", step=s10)
        digest = decode_digest(first(body, "hash", "hashes"), algorithm, step=s10)
        nonce = body.get("nonce")
        if nonce is None:
            return cls(algorithm, digest, None)
        if not isinstance(nonce, str) or not nonce or len(nonce) > 64 or any(c not in string.hexdigits for c in nonce):
            raise InvalidRequest("nonce must be a hex string of at most 64 digits", step=s10)
        return cls(algorithm, digest, int(nonce, 16))
