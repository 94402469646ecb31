"""The SAM (signature activation module): the one place a SAD or a credential token is checked.

Nothing is signed, and no SAD is issued, unless this module said yes. A SAD (CSC v1, issued by
``credentials/authorize``) or a credential-scope access token (person signing: the token *is* the
SAD) binds the user, the client, the credential or one-time transaction, the hash algorithm, the
exact set of digests (raw bytes, stored as hex), their count and an expiry; it is single use.

Each rule is one function below, named after the rule; it refuses with the CSC error and HTTP
status shown, and changes nothing (except the last two, which spend what they guard):

=====================================  =====================================  ==========================
rule                                   function                               refusal
=====================================  =====================================  ==========================
token known (not unknown or revoked)   :func:`check_token_known`              401 ``invalid_token``
token type / scope                     :func:`check_token_type`               401 ``invalid_token``
token expiry                           :func:`check_token_expiry`             401 ``invalid_token``
a spent SAD authorizes nothing more    :func:`check_token_not_spent`          401 ``invalid_token``
credential of this user and client     :func:`check_credential_owner`         400 ``invalid_request``
SAD given, known, of this credential   :func:`check_sad_given`,               400 ``invalid_request``
                                       :func:`check_sad_known`,
                                       :func:`check_sad_credential_binding`
SAD not used yet                       :func:`check_sad_unused`               400 ``invalid_request``
SAD expiry                             :func:`check_sad_expiry`               400 ``invalid_request``
qualifier binding                      :func:`check_qualifier_binding`        400 ``invalid_request``
signature algorithm fits the key       :func:`check_signature_algorithm`      400 ``invalid_request``
hash algorithm binding                 :func:`check_hash_algorithm_binding`,  400 ``invalid_request``
                                       :func:`check_digest_lengths`
digest set binding                     :func:`check_digest_set_binding`       400 ``invalid_request``
count (SAD, credential, hashes named)  :func:`check_count`,                   400 ``invalid_request``
                                       :func:`check_count_within_credential`,
                                       :func:`check_signatures_left`,
                                       :func:`check_hash_count`
a SAD's hashes have one algorithm      :func:`check_hash_algorithm_of_hashes`  400 ``invalid_request``
credential usable (enabled, valid)     :func:`check_credential_usable`        400 ``invalid_request``
SAD issued without the person only     :func:`check_count_only_credential`    400 ``invalid_request``
for a SCAL 1 (count-only) credential
SCAL 2: the person approved the hashes :func:`check_person_approved`          400 ``invalid_request``
single use (replay)                    :func:`consume_single_use`             400 ``invalid_request``
credential budget                      :func:`spend_credential_budget`        400 ``invalid_request``
=====================================  =====================================  ==========================

:class:`SignatureActivationModule` composes the rules for each CSC method (``signDoc``,
``signHash``, ``credentials/authorize``, ``credentials/extendTransaction``) and writes every
refusal to the audit log (``token.refused`` / ``sad.refused``) before raising. The request's
syntax (spellings, base64, OIDs) was checked once at the edge (:mod:`services.signer.csc`).

**Adding a rule** (for example a binding to a document label):
write one ``check_…`` function here, named after the rule, call it from the composition of every
method it applies to (before the two spending rules, which must stay last), add a row to the
table above, and give it an accept and a refuse test in ``tests/services/signer/test_sam.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from services.signer.csc import (
    CredentialsAuthorizeRequest,
    ExtendTransactionRequest,
    SignDocRequest,
    SignHashRequest,
    key_algorithms,
)
from services.signer.errors import DigestNotAuthorized, SadExpired, SadInvalid, TooManySignatures, UnsupportedAlgorithm
from services.signer.hsm import DIGEST_SIZES
from services.signer.store import CredentialRecord, Store, TokenRecord, TransactionRecord, secret_hash
from shared.audit import AuditLog
from shared.errors import InvalidRequest, InvalidToken, SignLabError
from shared.flow import FlowStep, step

__all__ = [
    "BEARER_CHALLENGE",
    "SignatureActivationModule",
    "check_count",
    "check_count_within_credential",
    "check_credential_owner",
    "check_credential_usable",
    "check_digest_lengths",
    "check_digest_set_binding",
    "check_hash_algorithm_binding",
    "check_qualifier_binding",
    "check_sad_credential_binding",
    "check_sad_expiry",
    "check_sad_given",
    "check_sad_known",
    "check_sad_unused",
    "check_count_only_credential",
    "check_hash_algorithm_of_hashes",
    "check_hash_count",
    "check_person_approved",
    "check_signature_algorithm",
    "no_token",
    "check_signatures_left",
    "check_token_expiry",
    "check_token_known",
    "check_token_not_spent",
    "check_token_type",
    "consume_single_use",
    "spend_credential_budget",
]

SAD_KINDS = ("sad", "credential")
"""Token kinds that authorize signatures: a v1 SAD, or a credential-scope access token used as one."""
SINGLE_USE_KINDS = ("sad", "credential", "sign")
"""Token kinds spent by their one use: SADs, credential-scope tokens, person-signing tokens."""


# ---------------------------------------------------------------------------- the rules


def check_token_known(record: TokenRecord | None) -> TokenRecord:
    """The bearer token exists and is not revoked."""
    if record is None or record.revoked:
        raise InvalidToken("the access token is unknown or revoked")
    return record


def check_token_type(record: TokenRecord, kinds: Sequence[str]) -> None:
    """The token is of a kind (scope) this method accepts: ``service``, ``sign``, ``credential``."""
    if record.kind not in kinds:
        raise InvalidToken(f"a {record.kind}-scope token cannot be used here (needs {' or '.join(kinds)})")


def check_token_expiry(record: TokenRecord, now: float) -> None:
    """The access token has not expired (no leeway: the service's own clock issued it)."""
    late = now - record.expires_at
    if late > 0:
        raise InvalidToken(f"the access token expired {int(late) or 1} s ago", error="invalid_token")


def check_token_not_spent(record: TokenRecord) -> None:
    """A single-use token (a SAD, a credential or person-signing token) that was used is spent: it
    authorizes nothing more, not even a time-stamp (review V6)."""
    if record.kind in SINGLE_USE_KINDS and record.used_at is not None:
        raise InvalidToken(f"the {record.kind} token was already used; a spent SAD authorizes nothing more")


def check_credential_owner(token: TokenRecord, credential_id: str,
                           credential: CredentialRecord | None) -> CredentialRecord:
    """The credential exists and belongs to the token's user and client (client binding)."""
    if not credential_id:
        raise InvalidRequest("Missing or invalid parameter credentialID")
    if credential is None or credential.subject != token.subject or credential.client_id != token.client_id:
        raise InvalidRequest("Invalid parameter credentialID")
    return credential


def check_sad_given(sad: str | None) -> str:
    """The request carries a SAD."""
    if not sad:
        raise SadInvalid("Missing or invalid parameter SAD")
    return sad


def check_sad_known(record: TokenRecord | None) -> TokenRecord:
    """The SAD is a SAD (or a credential token) of this service, and is not revoked."""
    if record is None or record.kind not in SAD_KINDS or record.revoked:
        raise SadInvalid("invalid SAD")
    return record


def check_sad_credential_binding(sad: TokenRecord, credential: CredentialRecord) -> None:
    """The SAD was issued for this credential."""
    if sad.credential_id != credential.id:
        raise SadInvalid("the SAD belongs to another credential")


def check_sad_unused(sad: TokenRecord) -> None:
    """The SAD has not been used (the early, read-only half of single use; see :func:`consume_single_use`)."""
    if sad.used_at is not None:
        raise SadInvalid("the SAD was already used: replay refused")


def check_sad_expiry(sad: TokenRecord, now: float) -> None:
    """The SAD has not expired (CSC: ``400 invalid_request``, "SAD expired")."""
    late = now - sad.expires_at
    if late > 0:
        raise SadExpired(f"SAD expired {int(late) or 1} s ago")


def check_qualifier_binding(authorized: str, requested: str | None, *, at: FlowStep) -> None:
    """A ``signatureQualifier`` in the request is the one the signer consented to."""
    if requested is not None and requested != authorized:
        raise DigestNotAuthorized(f"signatureQualifier {requested[:40]!r} is not the authorized {authorized}", step=at)


BEARER_CHALLENGE = 'Bearer realm="signlab-signer"'
"""The challenge of a request without a bearer token: RFC 6750 §3.1, no error code (the request
carried no authentication, or one of another scheme)."""


def no_token(description: str) -> InvalidToken:
    """The 401 of a request that presents no bearer token (its challenge names no error)."""
    refusal = InvalidToken(description)
    refusal.headers = {"WWW-Authenticate": BEARER_CHALLENGE}
    return refusal


def check_signature_algorithm(sign_algo: str | None, allowed: Sequence[str], key: str, *, at: FlowStep) -> None:
    """A requested ``signAlgo`` is one the key can make (``key.algo``); ``None`` lets the key decide."""
    if sign_algo is not None and sign_algo not in allowed:
        raise UnsupportedAlgorithm(f"signAlgo {sign_algo[:40]!r} does not fit {key}", step=at)


def check_hash_algorithm_binding(sad: TokenRecord, algorithms: Iterable[str], *, at: FlowStep | None) -> None:
    """Every digest uses the SAD's hash algorithm (a SAD without one accepts any)."""
    for algorithm in algorithms:
        if sad.hash_alg is not None and algorithm != sad.hash_alg:
            raise DigestNotAuthorized(f"hash algorithm {algorithm} is not the authorized {sad.hash_alg}", step=at)


def check_digest_lengths(digests: Iterable[bytes], algorithm: str | None) -> None:
    """Hashes given without an algorithm of their own have the length of the SAD's algorithm."""
    for digest in digests:
        if algorithm is not None and len(digest) != DIGEST_SIZES[algorithm]:
            raise InvalidRequest(f"Invalid digest value length: {algorithm} needs {DIGEST_SIZES[algorithm]} bytes, "
                                 f"got {len(digest)}")


def check_digest_set_binding(sad: TokenRecord, digests: Iterable[bytes], *, at: FlowStep | None) -> None:
    """Every digest is one the SAD authorizes (compared as raw bytes, never as text)."""
    authorized = set(sad.digests)
    if any(digest.hex() not in authorized for digest in digests):
        raise DigestNotAuthorized(step=at)


def check_count(sad: TokenRecord, digests: Sequence[bytes], *, exact: bool, at: FlowStep | None) -> None:
    """No more digests than the SAD authorizes, none twice, and (``exact``: signDoc) all of them."""
    if len(digests) > sad.num_signatures:
        raise TooManySignatures(f"{len(digests)} signatures requested, {sad.num_signatures} authorized", step=at)
    if len(set(digests)) != len(digests):
        raise InvalidRequest("the same digest is listed twice", step=at)
    if exact and len(digests) != sad.num_signatures:
        raise InvalidRequest(f"the SAD authorizes exactly {sad.num_signatures} digests; {len(digests)} were sent",
                             step=at)


def check_count_within_credential(digests: Sequence[bytes], credential: CredentialRecord, *,
                                  at: FlowStep | None) -> None:
    """No more hashes in one call than the credential's ``multisign``."""
    if len(digests) > credential.multisign:
        raise InvalidRequest(f"at most {credential.multisign} hash values are allowed, got {len(digests)}", step=at)


def check_signatures_left(credential: CredentialRecord, number: int, *, at: FlowStep) -> None:
    """A SAD for ``number`` signatures fits the credential's remaining signatures and ``multisign``."""
    if number > credential.remaining or number > credential.multisign:
        raise TooManySignatures("Numbers of signatures is too high", step=at)


def check_hash_count(number: int, digests: Sequence[bytes], *, at: FlowStep) -> None:
    """A SAD covers exactly ``numSignatures`` hashes, each named (it is bound to each of them)."""
    if len(digests) != number:
        raise InvalidRequest("the number of hashes must equal numSignatures (a SAD is bound to each hash)", step=at)


def check_hash_algorithm_of_hashes(algorithm: str | None, digests: Sequence[bytes], *, at: FlowStep) -> str:
    """The hash algorithm a SAD is bound to: the one named, or else the one every digest's length
    says (a SAD is never left unbound to an algorithm)."""
    if algorithm is not None:
        return algorithm
    by_size = {size: name for name, size in DIGEST_SIZES.items()}
    named = {by_size.get(len(d)) for d in digests}
    if len(named) != 1 or None in named:
        raise InvalidRequest("the hashes differ in length: name their algorithm (hashAlgorithmOID or hashAlgo)",
                             step=at)
    return str(named.pop())


def check_count_only_credential(credential: CredentialRecord, method: str, *, at: FlowStep) -> None:
    """A SAD for hashes the person never saw is issued only for a SCAL 1 (count-only) credential;
    a SCAL 2 credential's SADs come from the person's credential authorization."""
    if credential.scal != "1":
        raise InvalidRequest(
            f"{method} issues no SAD for credential {credential.id}: it is SCAL 2 (authMode oauth2code), so the "
            "person approves the exact hashes — ask with oauth2/authorize (or PAR) scope=credential, credentialID, "
            "numSignatures and hash, or authorization_details with credentialID and documentDigests", step=at)


def check_person_approved(sad: TokenRecord, credential: CredentialRecord, *, at: FlowStep) -> None:
    """SCAL 2: the SAD is the credential-scope token the person's consent to these exact hashes
    produced (not a SAD the partner obtained on its own)."""
    if credential.scal == "2" and sad.kind != "credential":
        raise SadInvalid("SCAL 2: this SAD was not approved by the person for these hashes", step=at)


def check_credential_usable(credential: CredentialRecord, now: float, *, at: FlowStep | None) -> None:
    """The credential's key is enabled and its certificate has not expired."""
    if credential.status != "enabled" or now > credential.expires_at:
        raise InvalidRequest("the credential's key is disabled or its certificate expired", step=at)


def consume_single_use(store: Store, sad: TokenRecord, now: float, *, at: FlowStep | None,
                       description: str = "the SAD was already used: replay refused") -> None:
    """Single use: mark the SAD used, atomically; a second use (a replay, or a race) is refused."""
    if not store.use_token(sad.token_hash, now):
        raise SadInvalid(description, step=at)


def spend_credential_budget(store: Store, credential: CredentialRecord, count: int, *, at: FlowStep | None) -> None:
    """Take ``count`` signatures from the credential's remaining ones, atomically."""
    if store.spend_credential(credential.id, count) is None:
        raise TooManySignatures("the credential has no signatures left", step=at)


# ---------------------------------------------------------------------------- the rules per CSC method


class SignatureActivationModule:
    """The rules above, composed per CSC method, with every refusal audited.

    :param store: the transaction database (tokens and credentials).
    :param audit: the hash-chained audit log.
    :param clock: the time source (seconds since the epoch).
    """

    def __init__(self, store: Store, audit: AuditLog, clock: Callable[[], float]) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    @contextmanager
    def _refusals_audited(self, event: str, **data: Any) -> Iterator[None]:
        """Write ``event`` (with the refusal's code and reason unless ``reason`` is given) and re-raise."""
        try:
            yield
        except SignLabError as exc:
            details = data if "reason" in data else {**data, "error": exc.error, "reason": exc.description}
            self.audit.append(event, **details)
            raise

    def _token(self, value: str | None) -> TokenRecord | None:
        return self.store.token(secret_hash(value)) if value else None

    # -- access tokens ------------------------------------------------------------------------------

    def access_token(self, token: str | None, kinds: Sequence[str]) -> TokenRecord:
        """The valid, unexpired token behind ``Authorization: Bearer``, of one of ``kinds``.

        :raises InvalidToken: missing, unknown, revoked, of another kind, or expired (401).
        """
        if not token:
            raise no_token("an access token is required (Authorization: Bearer)")
        with self._refusals_audited("token.refused", reason="unknown or revoked bearer token"):
            record = check_token_known(self._token(token))
        with self._refusals_audited("token.refused", transaction_id=record.transaction_id,
                                    reason=f"{record.kind}-scope token used where {' or '.join(kinds)} is needed"):
            check_token_type(record, kinds)
        now = self.clock()
        with self._refusals_audited("sad.refused", step=6, transaction_id=record.transaction_id,
                                    reason=f"token expired {int(now - record.expires_at)} s ago"):
            check_token_expiry(record, now)
        return record

    def timestamp_token(self, token: str | None) -> TokenRecord:
        """The token of a ``signatures/timestamp`` call: any scope of this service, but known, not
        revoked, not a spent SAD, unexpired (refusals audited as ``token.refused``).

        :raises InvalidToken: missing, unknown, revoked, spent or expired (401).
        """
        if not token:
            raise no_token("an access token of this service is required (Authorization: Bearer)")
        with self._refusals_audited("token.refused", reason="unknown or revoked bearer token"):
            record = check_token_known(self._token(token))
        with self._refusals_audited("token.refused", transaction_id=record.transaction_id):
            check_token_not_spent(record)
            check_token_expiry(record, self.clock())
        return record

    def owned_credential(self, token: TokenRecord, credential_id: str | None) -> CredentialRecord:
        """The credential ``credential_id`` of the token's user and client."""
        credential = self.store.credential(credential_id) if credential_id else None
        return check_credential_owner(token, credential_id or "", credential)

    def sad_for(self, sad: str | TokenRecord | None, credential: CredentialRecord) -> TokenRecord:
        """The SAD ``sad`` (its value, or the record of a credential token) of ``credential``: known,
        bound to it, unused, unexpired (nothing spent)."""
        record = check_sad_known(sad if isinstance(sad, TokenRecord) else self._token(check_sad_given(sad)))
        check_sad_credential_binding(record, credential)
        check_sad_unused(record)
        check_sad_expiry(record, self.clock())
        return record

    # -- person signing -----------------------------------------------------------------------------

    def activate_sign_doc(self, access: TokenRecord, transaction: TransactionRecord, request: SignDocRequest,
                          key_algorithm: str) -> None:
        """``signDoc`` (step 6): the credential token authorizes exactly these digests; it is spent.

        :param access: the ``sign``-kind token from :meth:`access_token`.
        :param key_algorithm: the one-time key's algorithm (``ec-p256`` …), for ``signAlgo``.
        """
        s6 = step(6)
        digests = [d.digest for d in request.documents]
        with self._refusals_audited("sad.refused", step=6, transaction_id=access.transaction_id):
            check_qualifier_binding(transaction.request["qualifier"], request.qualifier, at=s6)
            allowed = key_algorithms(key_algorithm.startswith("ec"))
            for document in request.documents:
                check_signature_algorithm(document.sign_algo, allowed, f"the one-time {key_algorithm} key", at=s6)
            check_hash_algorithm_binding(access, (d.hash_algorithm for d in request.documents), at=s6)
            check_digest_set_binding(access, digests, at=s6)
            check_count(access, digests, exact=True, at=s6)
            consume_single_use(self.store, access, self.clock(), at=s6,
                               description="the SAD (credential token) was already used: replay refused")
        # Written at once but fsynced with transaction.completed, before the signature leaves the service.
        self.audit.append("sad.accepted", step=6, transaction_id=transaction.id, digests=access.digests, sync=False)

    # -- certificate first --------------------------------------------------------------------------

    def sign_hash_token(self, token: str | None, *, sad_in_body: bool) -> TokenRecord:
        """The token a ``signHash`` call is made with.

        v1: ``Authorization`` is the service token (checked as :meth:`access_token`) and ``SAD`` is
        in the body. v2 also accepts a credential-scope token in the header in place of ``SAD``;
        that token is the SAD, checked as one by :meth:`activate_sign_hash`.
        """
        header = self._token(token)
        if header is not None and header.kind == "credential" and not sad_in_body:
            return header
        return self.access_token(token, ("service",))

    def activate_sign_hash(self, holder: TokenRecord, request: SignHashRequest) -> CredentialRecord:
        """``signHash`` (step 9): the SAD authorizes these hashes of this credential; both are spent.

        :param holder: the token from :meth:`sign_hash_token`.
        :return: the credential (as it was before the signatures were taken from it).
        """
        s6 = step(6)  # the SAM's check before the HSM signs, as for signDoc
        with self._refusals_audited("sad.refused", step=6, transaction_id=holder.transaction_id):
            credential = self.owned_credential(holder, request.credential_id)
            sad = self.sad_for(holder if holder.kind == "credential" else request.sad, credential)
        with self._refusals_audited("sad.refused", step=6, transaction_id=credential.transaction_id,
                                    digests=sorted(d.hex() for d in request.digests)):
            check_person_approved(sad, credential, at=s6)
            check_signature_algorithm(request.sign_algo, key_algorithms(credential.algorithm.startswith("ec")),
                                      "the credential's key (key.algo)", at=s6)
            check_count_within_credential(request.digests, credential, at=s6)
            check_hash_algorithm_binding(sad, [request.hash_algorithm], at=s6)
            check_digest_set_binding(sad, request.digests, at=s6)
            check_count(sad, request.digests, exact=False, at=s6)
            check_credential_usable(credential, self.clock(), at=s6)
            consume_single_use(self.store, sad, self.clock(), at=s6)
            spend_credential_budget(self.store, credential, len(request.digests), at=s6)
        return credential

    def authorize_sad_issuance(self, service: TokenRecord,
                               request: CredentialsAuthorizeRequest) -> tuple[CredentialRecord, str]:
        """``credentials/authorize`` (step 2): may a SAD for these hashes be issued without the
        person (SCAL 1 only)? The credential and the hash algorithm the SAD is bound to."""
        s2 = step(2)
        with self._refusals_audited("sad.refused", step=2, transaction_id=service.transaction_id):
            credential = self.owned_credential(service, request.credential_id)
            check_count_only_credential(credential, "credentials/authorize", at=s2)
            check_signatures_left(credential, request.num_signatures, at=s2)
            check_credential_usable(credential, self.clock(), at=s2)
            check_count_within_credential(request.digests, credential, at=s2)
            check_hash_count(request.num_signatures, request.digests, at=s2)
            algorithm = check_hash_algorithm_of_hashes(request.hash_algorithm, request.digests, at=s2)
        return credential, algorithm

    def redeem_sad_for_extension(self, service: TokenRecord,
                                 request: ExtendTransactionRequest) -> tuple[CredentialRecord, TokenRecord]:
        """``credentials/extendTransaction`` (SCAL 1 only): the old SAD is valid for the credential,
        the new hashes fit the signatures left; the old SAD is spent.

        :return: the credential and the old SAD (its algorithm and digests carry over).
        """
        s2 = step(2)
        with self._refusals_audited("sad.refused", step=2, transaction_id=service.transaction_id):
            credential = self.owned_credential(service, request.credential_id)
            check_count_only_credential(credential, "credentials/extendTransaction", at=s2)
            old = self.sad_for(request.sad, credential)
            check_digest_lengths(request.digests, old.hash_alg)
            check_count_within_credential(request.digests, credential, at=s2)
            check_signatures_left(credential, len(request.digests) or len(old.digests), at=s2)
            consume_single_use(self.store, old, self.clock(), at=s2, description="the SAD was already used")
        return credential, old

    def credential_for_authorization_request(self, client_id: str, credential_id: str, count: int) -> CredentialRecord:
        """A credential-scope authorization request (step 2) names an enabled credential of this
        client with ``count`` signatures left."""
        credential = self.store.credential(credential_id)
        if credential is None or credential.client_id != client_id or credential.status != "enabled":
            raise InvalidRequest("Invalid parameter credentialID (unknown, disabled or not this client's)",
                                 step=step(2))
        if count > credential.remaining:
            raise TooManySignatures(f"{count} signatures requested, the credential allows {credential.remaining}",
                                    step=step(2))
        return credential
