"""Start-up of the signer app: leftover HSM keys destroyed and recorded, in-flight transactions expired."""

from __future__ import annotations

import time

import pytest
from pkcs11 import Attribute, KeyType, MechanismFlag
from pkcs11.util.ec import encode_named_curve_parameters

from services.signer import create_app
from services.signer.settings import SignerSettings
from services.signer.store import Store, TransactionRecord

pytestmark = pytest.mark.hsm


def test_startup_destroys_leftover_keys_and_expires_in_flight_transactions(fresh_settings: SignerSettings) -> None:
    from services.signer.hsm import Hsm

    hsm = Hsm(fresh_settings)
    # A leftover persistent (token) key, as a crashed or misconfigured process could leave.
    params = hsm.session().create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    params.generate_keypair(id=b"leftover-key-id!", label="leftover", store=True,
                            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY)
    assert len(hsm.key_objects()) == 2
    now = time.time()
    Store(fresh_settings.database_path).create_transaction(TransactionRecord(
        id="tx-inflight", kind="sign", client_id="signlab-portal", state="requested", created=now, updated=now,
        expires_at=now + 600, request={"documents": []}))

    app = create_app(fresh_settings)
    core = app.extensions["signlab.signer"]
    assert hsm.key_objects() == []
    events = [(e.event, e.data) for e in core.audit.entries()]
    assert sum(1 for name, _ in events if name == "hsm.leftover_destroyed") == 2
    assert ("transaction.expired", {"transaction_id": "tx-inflight",
                                    "reason": "the signing service restarted while the transaction was in flight"}) in events
    assert core.store.transaction("tx-inflight").state == "expired"
    assert core.audit.verify().ok
    health = app.test_client().get("/healthz").get_json()
    assert health["checks"]["hsm"]["status"] == "ok"
