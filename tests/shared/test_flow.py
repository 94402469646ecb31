"""The flow vocabulary: ten steps, both orders, the services."""

import pytest

from shared.flow import CERTIFICATE_FIRST_ORDER, PERSON_SIGNING_ORDER, SERVICES, STEPS, Role, service, step


def test_ten_steps_numbered_in_order() -> None:
    assert [s.number for s in STEPS] == list(range(1, 11))
    assert step(7).source is Role.SSASP and step(7).target is Role.TSP
    assert step(7).label == "step 7 (SSASP → TSP)"
    assert step(7).span_name == "step-07 certificate issuance"


@pytest.mark.parametrize("number", [0, 11, -1])
def test_step_out_of_range(number: int) -> None:
    with pytest.raises(ValueError, match="numbered 1-10"):
        step(number)


def test_both_flows_are_permutations_of_the_ten_steps() -> None:
    assert sorted(PERSON_SIGNING_ORDER) == sorted(CERTIFICATE_FIRST_ORDER) == list(range(1, 11))
    # certificate first: key and certificate (6, 7) before the portal computes the DTBS/R (2)
    assert CERTIFICATE_FIRST_ORDER.index(7) < CERTIFICATE_FIRST_ORDER.index(2)


def test_services_and_their_steps() -> None:
    assert [(s.name, s.role, s.default_port) for s in SERVICES] == [
        ("portal", Role.SCASP, 8000), ("idp", Role.IPSP, 8001), ("ca", Role.TSP, 8002), ("signer", Role.SSASP, 8003),
        ("wallet", Role.WALLET, 8004)]
    assert [s.number for s in service("idp").steps] == [3, 4, 5]
    assert [s.number for s in service("ca").steps] == [7]
    assert [s.number for s in service("portal").steps] == [1, 2, 10]
    assert [s.number for s in service("signer").steps] == [2, 3, 5, 6, 7, 8, 9, 10]
    assert [s.number for s in service("wallet").steps] == [4]  # the signer's device, inside the eID login
    assert service("signer").env_prefix == "SIGNLAB_SIGNER_"
    with pytest.raises(KeyError, match="unknown service"):
        service("hsm")
