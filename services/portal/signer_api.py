"""The SSASP as the portal sees it: the CSC/OAuth2 calls the SCASP makes (steps 2, 5, 6 and the
certificate-first flow's credential and signHash calls), as a typing Protocol so the domain core
takes any implementation — :class:`shared.clients.signer.SignerClient` over HTTP in the service,
the same client against a test ecosystem in the tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["SignerApi"]


class SignerApi(Protocol):
    """The SSASP calls the portal makes (implemented by ``shared.clients.signer.SignerClient``)."""

    def push_authorization_request(self, *, redirect_uri: str, state: str, code_challenge: str,
                                   qualifier: str | None = None, documents: Sequence[tuple[bytes, str]] = (),
                                   hash_algorithm: str = "sha256", login_hint: str | None = None,
                                   scope: str | None = None, num_signatures: int | None = None,
                                   credential_id: str | None = None) -> Any:
        """Step 2: PAR with RAR ``credential`` for ``documents`` (digest, label), or ``scope="service"``
        with ``num_signatures`` (certificate first); the result has ``authorize_url``."""

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> Any:
        """Step 5 (portal side): code → credential token; the result has ``access_token``."""

    def sign_doc(self, access_token: str, *, digests: Sequence[bytes], signature_format: str = "P",
                 hash_algorithm: str = "sha256", conformance_level: str = "AdES-B-B", qualifier: str | None = None,
                 return_validation_info: bool = False) -> Any:
        """Steps 6-10: the result has ``signature_objects``, ``certificates`` and ``validation_info``."""

    def credentials_info(self, access_token: str, credential_id: str, version: int = 1) -> Any:
        """Certificate first: the one-time credential (``certificates``, ``key_status``, ``scal``, ``multisign``…)."""

    def credentials_authorize(self, access_token: str, credential_id: str, hashes: Sequence[bytes],
                              version: int = 1) -> tuple[str, int]:
        """Certificate first: a SAD bound to exactly ``hashes`` (SCAL 2); ``(SAD, expires_in)``."""

    def sign_hash(self, access_token: str, credential_id: str, sad: str, hashes: Sequence[bytes],
                  sign_algo: str, hash_algorithm: str = "sha256", version: int = 1) -> list[bytes]:
        """Certificate first: raw signature values (DER for ECDSA) in the order of ``hashes``."""

    def revoke(self, token: str) -> None:
        """RFC 7009 token revocation."""

    def transaction_status(self, transaction_id: str, *, answer_lost: bool = False) -> Any:
        """Where the SSASP's transaction is (``state``, ``ended``, ``error``); with ``answer_lost``,
        report that its signed answer never arrived (the result has ``certificate_revocation``)."""
