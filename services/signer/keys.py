"""The one-time keys of this process: made at step 6, destroyed at step 9 on every path.

One-time keys are PKCS#11 session objects: they exist only in the process that made them (the
notes of :mod:`services.signer.hsm`). Their handles are therefore kept here, in memory, next to
their ids; the database keeps only the id. Every creation and every destruction is a trace span
(``C_GenerateKeyPair``, ``C_DestroyObject``) and an audit entry (``key.created``,
``key.destroyed``), so a key's whole life can be read from the audit log.
"""

from __future__ import annotations

import threading

from services.signer.hsm import Hsm, HsmError, OneTimeKey
from shared.audit import AuditLog
from shared.flow import step
from shared.tracing import flow_span

__all__ = ["OneTimeKeys"]


class OneTimeKeys:
    """The handles of the one-time keys that are alive in this process.

    :param hsm: the HSM handle.
    :param audit: the hash-chained audit log.
    :param algorithm: the algorithm of every new key (``ec-p256`` or ``rsa-3072``).
    """

    def __init__(self, hsm: Hsm, audit: AuditLog, algorithm: str) -> None:
        self.hsm = hsm
        self.audit = audit
        self.algorithm = algorithm
        self._keys: dict[str, OneTimeKey] = {}
        self._lock = threading.Lock()

    def step6_create(self, transaction_id: str, *, durable_later: bool = False) -> OneTimeKey:
        """Step 6: a fresh key pair in the HSM (sensitive, not extractable, a session object).

        :param durable_later: the caller writes a synced audit entry before it answers (on every
            path), so ``key.created`` need not be fsynced on its own.
        :raises HsmError: the HSM refused (audited as ``key.refused``); nothing is left behind.
        """
        try:
            with flow_span(step(6), "C_GenerateKeyPair", response="one-time key handle",
                           summary={"algorithm": self.algorithm, "transaction_id": transaction_id,
                                    "sensitive": True, "extractable": False, "token_object": False}) as span:
                key = self.hsm.create_one_time_key(self.algorithm, label=transaction_id)
                span.response({"key_id": key.key_id, "algorithm": key.algorithm})
        except HsmError as exc:
            self.audit.append("key.refused", step=6, transaction_id=transaction_id, reason=exc.description)
            raise
        with self._lock:
            self._keys[key.key_id] = key
        self.audit.append("key.created", step=6, transaction_id=transaction_id, key_id=key.key_id,
                          algorithm=key.algorithm, sensitive=True, extractable=False, token_object=False,
                          sync=not durable_later)
        return key

    def get(self, key_id: str) -> OneTimeKey | None:
        """The handle of a live key of this process, or ``None`` (destroyed, or made before a restart)."""
        with self._lock:
            return self._keys.get(key_id)

    def step9_destroy(self, key_id: str, transaction_id: str, *, sync: bool = True) -> None:
        """Step 9: destroy both halves of a key; safe for a key that is already gone.

        :param sync: ``False`` when the caller's next audit entry is synced anyway.
        """
        with flow_span(step(9), "C_DestroyObject", response="key destroyed",
                       summary={"key_id": key_id, "transaction_id": transaction_id}) as span:
            destroyed = self.hsm.destroy_key(key_id)
            span.response({"objects_destroyed": destroyed})
        with self._lock:
            self._keys.pop(key_id, None)
        self.audit.append("key.destroyed", step=9, transaction_id=transaction_id, key_id=key_id, objects=destroyed,
                          sync=sync)

    def destroy_leftovers(self) -> None:
        """At start-up: destroy every key object on the token (a previous process's leftovers)."""
        for row in self.hsm.destroy_all_keys():
            self.audit.append("hsm.leftover_destroyed", step=9, key_id=row["id"], key_class=row["class"],
                              token_object=row["token_object"])
