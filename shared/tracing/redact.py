"""Redacted, decoded summaries of protocol messages for trace spans.

A trainer wants to *read* each message (the claims of an ID token, which digests a SAD is bound to,
the subject and policy of a certificate) and must never see a secret. :func:`summarize` turns a
request or response (form fields, query parameters, JSON bodies, selected headers, some DER
bodies) into a small JSON-able dict where:

* secrets (client secrets, PINs, one-time codes, PKCE verifiers, CSRF tokens) are masked
  completely (``"•••• (masked, 24 chars)"``);
* bearer values (authorization codes, ``request_uri`` handles, access tokens / SADs, client
  assertions, ``state`` and ``nonce``) are replaced by a short SHA-256 fingerprint, so a reader
  can see that two messages carry the same value without learning it; a JWT additionally shows
  its decoded header and claims (the signature is dropped, secret-like claims are masked);
* document digests are shown in the one format of :mod:`shared.digests` (``SHA-256 9F86D081 …``:
  the algorithm and the whole digest; hex and base64 values alike);
* certificates and CSRs are decoded to subject, issuer, serial, policies, validity and key type;
* documents and signature objects are reduced to their size and fingerprint;
* personal data the diagrams do not need is masked (:mod:`shared.personal_data`): birth dates,
  national identifiers in claims, login hints and certificate subjects (docs/design.md §6).

Finally :class:`Scrubber` replaces every occurrence of the service's own known secret values (its
``SecretStr`` settings) anywhere in the text, and masks every national identifier it finds
(``PNONO-…``), as a last line of defence.

Limits: summaries are bounded (lists cut after 10 items, strings after 200 characters, the whole
summary after :data:`MAX_SUMMARY_CHARS`); anything not recognised is kept only if it is short.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared.digests import digest_fingerprint
from shared.personal_data import PERSONAL_KEYS, mask_field, mask_text

__all__ = [
    "MAX_SUMMARY_CHARS",
    "Scrubber",
    "correlation_key",
    "decode_certificate",
    "decode_csr",
    "decode_jwt",
    "fingerprint",
    "mask",
    "summarize",
    "summarize_authorization_header",
    "summarize_der",
]

MAX_SUMMARY_CHARS = 12_000
"""The largest JSON text one summary may have; longer ones are cut to their first fields."""

MASK = "••••"

SECRET_KEYS = frozenset({
    "password", "passwd", "pin", "user_pin", "so_pin", "hsm_user_pin", "hsm_so_pin", "otp", "client_secret",
    "secret", "code_verifier", "csrf_token", "private_key", "privatekey", "credential_pin", "pin_code", "passcode",
    "admin_token", "one_time_code", "session", "cookie", "set-cookie",
})
"""Field names whose value is never shown, not even as a fingerprint."""

TOKEN_KEYS = frozenset({
    "code", "access_token", "id_token", "refresh_token", "token", "client_assertion", "assertion", "sad",
    "request_uri", "state", "nonce", "authorization", "device_code", "subject_token", "logout_token",
    "login_hint_token", "id_token_hint", "browser", "bid",
})
"""Field names of bearer values: shown as a fingerprint (and decoded claims for a JWT)."""

DIGEST_KEYS = frozenset({"hash", "hashes", "digest", "digests", "message_digest", "messagedigest", "hashvalue",
                         "hashv", "dtbsr", "dtbsr_hash"})
CERT_KEYS = frozenset({"certificate", "cert", "certificates", "chain", "x5c", "issuer_certificate"})
CSR_KEYS = frozenset({"csr", "certification_request", "pkcs10"})
BLOB_KEYS = frozenset({
    "signatureobject", "signatures", "signature", "content", "document", "documents_content", "data", "pdf",
    "signed", "original", "crl", "ocsp", "timestamp", "signed_document", "file",
})
"""Field names of binary payloads (signatures, documents, CRLs): size and fingerprint only."""

HASH_ALGORITHMS = {
    "2.16.840.1.101.3.4.2.1": "SHA-256", "2.16.840.1.101.3.4.2.2": "SHA-384", "2.16.840.1.101.3.4.2.3": "SHA-512",
    "1.2.840.10045.4.3.2": "ECDSA-SHA256", "1.2.840.113549.1.1.11": "RSA-SHA256",
}

_JWT = re.compile(r"^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*$")
_HEX_DIGEST = re.compile(r"(?:[0-9A-Fa-f]{64}){1,2}|[0-9A-Fa-f]{96}")
"""The hex text of a SHA-256, SHA-384 or SHA-512 digest."""
_MAX_STRING = 200
_MAX_ITEMS = 10


def fingerprint(value: str | bytes) -> str:
    """A short, stable SHA-256 fingerprint (``"sha256:1a2b3c4d5e6f"``) that does not reveal the value."""
    data = value.encode() if isinstance(value, str) else value
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


def correlation_key(value: str) -> str:
    """The key under which a correlation value (request_uri, state, code, an id) is stored.

    Different from :func:`fingerprint` (a domain-separated hash), so that a stored key cannot be
    matched against the fingerprints shown in summaries.
    """
    return hashlib.sha256(b"signlab-correlation\0" + value.encode()).hexdigest()[:20]


def mask(value: object) -> str:
    """A secret, fully masked: only its length remains."""
    return f"{MASK} (masked, {len(str(value))} chars)"


def _bearer(value: str) -> Any:
    """A bearer value: fingerprint, plus the decoded header and claims when it is a JWT."""
    jwt = decode_jwt(value)
    if jwt is not None:
        return jwt
    return f"{MASK} ({fingerprint(value)}, {len(value)} chars)"


def decode_jwt(token: str) -> dict[str, Any] | None:
    """Decode a compact JWS *without* verifying it: ``{"jwt": fingerprint, "header", "claims"}``.

    The signature is dropped; claims are summarized recursively (secret-like claims masked).
    ``None`` when ``token`` is not a JWT.
    """
    if not isinstance(token, str) or len(token) > 20_000 or not _JWT.match(token):
        return None
    try:
        header_b64, payload_b64, _ = token.split(".")
        header = json.loads(_b64url(header_b64))
        claims = json.loads(_b64url(payload_b64))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(claims, dict):
        return None
    return {"jwt": fingerprint(token), "header": summarize(header), "claims": summarize(claims)}


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(text: str) -> bytes | None:
    """Standard or URL-safe base64 → bytes, or None."""
    cleaned = "".join(text.split())
    try:
        if "-" in cleaned or "_" in cleaned:
            return _b64url(cleaned.rstrip("="))
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _digest(value: Any) -> Any:
    if isinstance(value, list):
        return _cut([_digest(v) for v in value])
    if not isinstance(value, str):
        return summarize(value)
    # Hex first: the hex text of a SHA-256 digest (64 characters) is valid base64 too, and read as
    # base64 it is 48 bytes: a "SHA-384" digest that never existed. Base64 of a digest of these
    # sizes is never all hex digits (its length or its padding differs, or the odds are nil).
    raw = bytes.fromhex(value) if _HEX_DIGEST.fullmatch(value) else _b64(value)
    if raw is None:
        return _short(value)
    return digest_fingerprint(raw)  # the one format of every digest shown (shared.digests)


_MAX_CACHED_BLOB = 64 * 1024


def _blob(value: Any) -> Any:
    if isinstance(value, list):
        return _cut([_blob(v) for v in value])
    if isinstance(value, str):
        # Small blobs repeat (signDoc answers carry each signature object under both CSC spellings;
        # CRLs and chains travel again and again); large ones (documents) are not kept in memory.
        return _blob_text(value) if len(value) <= _MAX_CACHED_BLOB else _blob_text.__wrapped__(value)
    if isinstance(value, dict):
        return summarize(value)
    return _short(str(value))


@functools.lru_cache(maxsize=256)
def _blob_text(value: str) -> str:
    """Size and fingerprint of a base64 (or any text) blob."""
    raw = _b64(value)
    size = len(raw) if raw is not None else len(value)
    return f"{size} bytes ({fingerprint(raw if raw is not None else value)})"


def _decoded(value: Any, decode: Callable[[bytes], Any]) -> Any:
    """A PEM/base64 string decoded by ``decode``; a blob summary when it does not decode."""
    if isinstance(value, str):
        raw = _pem_or_b64(value)
        if raw is not None:
            decoded = decode(raw)
            if decoded is not None:
                return decoded
        return _blob(value)
    return summarize(value)


def _certificates(value: Any) -> Any:
    if isinstance(value, list):
        return _cut([_certificates(v) for v in value])
    return _decoded(value, decode_certificate)


def _csr(value: Any) -> Any:
    return _decoded(value, decode_csr)


def _pem_or_b64(value: str) -> bytes | None:
    if "-----BEGIN" in value:
        body = "".join(line for line in value.splitlines() if line and not line.startswith("-----"))
        return _b64(body)
    return _b64(value)


def decode_certificate(der: bytes) -> dict[str, Any] | None:
    """Subject, issuer, serial, policies, validity, key and (for QES) QC statements of a DER certificate."""
    decoded = _decode_certificate(bytes(der))
    return None if decoded is None else {k: list(v) if isinstance(v, list) else v for k, v in decoded.items()}


@functools.lru_cache(maxsize=256)
def _decode_certificate(der: bytes) -> dict[str, Any] | None:
    """:func:`decode_certificate`, cached: the same CA certificates travel in every issuance answer
    and signDoc response, and decoding them for each span was a quarter of the TSP's CPU time."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    result: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
        "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "validity_minutes": round((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 60, 1),
        "key": _key_type(cert.public_key()),
        "sha256": cert.fingerprint(__import__("cryptography.hazmat.primitives.hashes",
                                              fromlist=["SHA256"]).SHA256()).hex()[:16] + "…",
    }
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        result["policies"] = [p.policy_identifier.dotted_string for p in policies]
    except x509.ExtensionNotFound:
        pass
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        result["key_usage"] = [name for name in ("digital_signature", "content_commitment", "key_cert_sign", "crl_sign")
                               if getattr(usage, name)]
    except x509.ExtensionNotFound:
        pass
    for ext in cert.extensions:
        if ext.oid.dotted_string == "1.3.6.1.5.5.7.1.3":
            result["qc_statements"] = True
    return result


def decode_csr(der: bytes) -> dict[str, Any] | None:
    """Subject, key type and proof-of-possession check of a DER PKCS#10 request."""
    from cryptography import x509

    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        return None
    return {
        "csr_subject": csr.subject.rfc4514_string() or "(empty)",
        "key": _key_type(csr.public_key()),
        "proof_of_possession": "signature valid" if csr.is_signature_valid else "SIGNATURE INVALID",
        "size": f"{len(der)} bytes",
    }


def _key_type(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__


_IMMUTABLE_DER = frozenset({"application/pkix-cert", "application/x-x509-ca-cert", "application/pkix-crl"})


def summarize_der(content_type: str, der: bytes) -> dict[str, Any]:
    """A summary of a binary body by media type: certificates, CRLs, OCSP and RFC 3161 messages.

    Certificates and CRLs are summarized once per distinct body (the same CA certificate and CRL
    are fetched again and again); OCSP and time-stamp messages are unique and decoded every time.
    """
    kind = content_type.split(";")[0].strip().lower()
    if kind in _IMMUTABLE_DER:
        return {k: list(v) if isinstance(v, list) else v for k, v in _summarize_der_cached(kind, bytes(der)).items()}
    return _summarize_der(kind, der)


@functools.lru_cache(maxsize=64)
def _summarize_der_cached(kind: str, der: bytes) -> dict[str, Any]:
    """:func:`_summarize_der` of an immutable body, by its bytes (callers copy the result)."""
    return _summarize_der(kind, der)


def _summarize_der(kind: str, der: bytes) -> dict[str, Any]:
    summary: dict[str, Any] = {"body": f"{kind}, {len(der)} bytes ({fingerprint(der)})"}
    try:
        if kind in ("application/pkix-cert", "application/x-x509-ca-cert"):
            summary.update(decode_certificate(der) or {})
        elif kind == "application/pkix-crl":
            from asn1crypto import crl

            parsed = crl.CertificateList.load(der)
            tbs = parsed["tbs_cert_list"]
            summary.update({"issuer": tbs["issuer"].human_friendly, "this_update": str(tbs["this_update"].native),
                            "next_update": str(tbs["next_update"].native),
                            "revoked": len(tbs["revoked_certificates"]) if tbs["revoked_certificates"].native else 0})
        elif kind == "application/timestamp-query":
            from asn1crypto import tsp

            query = tsp.TimeStampReq.load(der)
            imprint = query["message_imprint"]
            summary.update({"hash_algorithm": imprint["hash_algorithm"]["algorithm"].native,
                            "message_imprint": _digest(base64.b64encode(imprint["hashed_message"].native).decode()),
                            "cert_req": bool(query["cert_req"].native)})
        elif kind == "application/timestamp-reply":
            from asn1crypto import tsp

            reply = tsp.TimeStampResp.load(der)
            summary["status"] = reply["status"]["status"].native
            token = reply["time_stamp_token"]
            if token.native is not None:
                info = token["content"]["encap_content_info"]["content"].parsed
                summary.update({"gen_time": str(info["gen_time"].native), "tst_serial": format(info["serial_number"].native, "x"),
                                "policy": info["policy"].dotted})
        elif kind == "application/ocsp-request":
            from asn1crypto import ocsp

            request = ocsp.OCSPRequest.load(der)
            summary["serials"] = [format(r["req_cert"]["serial_number"].native, "x")
                                  for r in request["tbs_request"]["request_list"]][:_MAX_ITEMS]
        elif kind == "application/ocsp-response":
            from asn1crypto import ocsp

            response = ocsp.OCSPResponse.load(der)
            summary["response_status"] = response["response_status"].native
            basic = response.basic_ocsp_response
            if basic is not None:
                summary["cert_status"] = [
                    {"serial": format(r["cert_id"]["serial_number"].native, "x"), "status": r["cert_status"].name}
                    for r in basic["tbs_response_data"]["responses"]][:_MAX_ITEMS]
    except (ValueError, TypeError, KeyError, AttributeError):
        summary["decoding"] = "not decodable as " + kind
    return summary


def summarize_authorization_header(value: str) -> dict[str, Any]:
    """``Authorization`` header: the scheme, for Basic the client id (secret masked), for Bearer the token summary."""
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, secret = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return {"scheme": "Basic", "credentials": mask(credentials)}
        from urllib.parse import unquote

        return {"scheme": "Basic", "client_id": unquote(user), "client_secret": mask(unquote(secret))}
    if scheme.lower() in ("bearer", "dpop"):
        return {"scheme": scheme, "token": _bearer(credentials.strip())}
    return {"scheme": scheme or "?", "credentials": mask(credentials)}


@functools.lru_cache(maxsize=2048)
def _kind(key: str | None) -> str:
    """What a field name says about its value (cached: the same few dozen names recur in every
    message, and classifying them again for every value was most of :func:`summarize`)."""
    name = (key or "").lower().replace("-", "_")
    if name in PERSONAL_KEYS:
        return "personal"
    if name in SECRET_KEYS or name.endswith(("_secret", "_pin", "password")):
        return "secret"
    if name in TOKEN_KEYS or name.endswith(("_token", "_assertion")):
        return "token"
    if name in DIGEST_KEYS:
        return "digest"
    if name in CERT_KEYS:
        return "cert"
    if name in CSR_KEYS:
        return "csr"
    if name in BLOB_KEYS:
        return "blob"
    if name == "authorization_details":
        return "authorization_details"
    if name in ("hashalgorithmoid", "hashalgo", "signalgo", "hash_algorithm_oid"):
        return "algorithm"
    return ""


_PLAIN = (type(None), bool, int, float)


def summarize(value: Any, key: str | None = None) -> Any:
    """The redacted summary of ``value`` (found under field name ``key``, when known)."""
    kind = _kind(key) if key else ""
    if kind == "secret":
        return mask(value if isinstance(value, str) else json.dumps(value, default=str))
    if kind == "personal":
        return summarize(mask_field(str(key), value))
    if type(value) in _PLAIN or value is None or isinstance(value, bool | int | float):
        return value
    if kind:
        if kind == "token":
            if isinstance(value, str):
                return _bearer(value)
            return mask(json.dumps(value, default=str))
        if kind == "digest":
            return _digest(value)
        if kind == "cert":
            return _certificates(value)
        if kind == "csr":
            return _csr(value)
        if kind == "blob":
            return _blob(value)
        if kind == "authorization_details" and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return _short(value)
        elif kind == "algorithm" and isinstance(value, str):
            return f"{value} ({HASH_ALGORITHMS.get(value, 'unknown')})"
    # type() first: the ABC isinstance checks were a visible cost for the common dict/list/str.
    kind_of = type(value)
    if kind_of is dict or (kind_of is not str and kind_of is not list and isinstance(value, Mapping)):
        return {str(k): summarize(v, str(k)) for k, v in itertools.islice(value.items(), 40)}
    if kind_of is list or isinstance(value, list | tuple):
        return _cut([summarize(v, key) for v in value])
    if isinstance(value, str):
        jwt = decode_jwt(value)
        if jwt is not None:
            return jwt
        if value.startswith(("http://", "https://")) and "?" in value:
            return _url(value)
        return _short(value)
    return _short(str(value))


def _url(url: str) -> str:
    """A URL with its query values redacted by name (a ``request_uri`` or ``code`` inside a link)."""
    from urllib.parse import parse_qsl

    base, _, query = url.partition("?")
    params = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        shown = summarize(value, name)
        if isinstance(shown, dict):  # a JWT in a URL: its fingerprint stands for it
            shown = f"{MASK} ({shown.get('jwt', 'jwt')})"
        params.append((name, shown if isinstance(shown, str) else json.dumps(shown)))
    # For reading, not for following: values are shown as they are (masks included).
    return _short(f"{base}?{'&'.join(f'{n}={v}' for n, v in params)}") if params else base


def _short(text: str) -> str:
    if len(text) <= _MAX_STRING:
        return text
    return f"{text[:60]}… ({len(text)} chars, {fingerprint(text)})"


def _cut(items: list[Any]) -> list[Any]:
    if len(items) <= _MAX_ITEMS:
        return items
    return [*items[:_MAX_ITEMS], f"… {len(items) - _MAX_ITEMS} more"]


class Scrubber:
    """Replaces known secret values (a service's own secrets) wherever they appear in text.

    :param secrets: the values to hide; values shorter than 6 characters are ignored (they would
        mask ordinary words), which is why secrets must be long (``signlab up`` generates 32).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Hide these values too."""
        for value in secrets:
            if value and len(value) >= 6:
                self._secrets.add(value)
                # Also their common encodings in URLs and form bodies.
                from urllib.parse import quote, quote_plus

                self._secrets.update({quote(value, safe=""), quote_plus(value)})
        if self._secrets:
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced by a mask and every national identifier masked."""
        text = mask_text(text) if text else text
        if self._pattern is None or not text:
            return text
        # On long texts (summaries, span names with URLs) a plain substring search per secret is
        # several times faster than the alternation, and nearly always finds nothing.
        if len(text) > 256 and not any(secret in text for secret in self._secrets):
            return text
        return self._pattern.sub(f"{MASK} (masked secret)", text)


def to_json(summary: Any, scrub: Scrubber | None = None) -> str:
    """A summary as bounded, scrubbed JSON text (the form stored in a span attribute)."""
    text = json.dumps(summary, ensure_ascii=False, default=str, separators=(",", ":"))
    if len(text) > MAX_SUMMARY_CHARS and isinstance(summary, dict):
        kept: dict[str, Any] = {}
        for k, v in summary.items():
            candidate = json.dumps({**kept, k: v}, ensure_ascii=False, default=str)
            if len(candidate) > MAX_SUMMARY_CHARS - 200:
                kept["…"] = f"summary cut at {MAX_SUMMARY_CHARS} characters"
                break
            kept[k] = v
        text = json.dumps(kept, ensure_ascii=False, default=str, separators=(",", ":"))
    elif len(text) > MAX_SUMMARY_CHARS:
        text = json.dumps(text[:MAX_SUMMARY_CHARS] + "…")
    return scrub(text) if scrub else text
