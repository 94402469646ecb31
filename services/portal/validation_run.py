"""One validation run: what the validator trusts, the validation time and pyHanko's local knowledge.

:class:`TrustSettings` is the configuration (the one trust anchor, the trusted list, the TSP's
current certificates and CRLs). :class:`ValidationRun` is one validation at a chosen time: the
timing pyHanko's AdES processes take, the validation policy (trust the root only, never fetch),
the TSP's data recorded for a signature (leaving out revocation data issued after the signer's
certificate expired, see :mod:`services.portal.validation`) and pyHanko's ``LocalKnowledge`` built
from everything the signature, the document and the TSP supplied.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from asn1crypto import ocsp, x509
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.qualified.eutl_parse import trust_list_to_registry_unsafe
from pyhanko.sign.validation.qualified.tsp import TSPRegistry
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from services.portal.ltv import ValidationMaterial, read_only_certificate, read_only_crl
from services.portal.validation_detail import SignatureFacts, iso, revocation_fact


@dataclass(frozen=True)
class TrustSettings:
    """What the validator trusts (configuration only).

    :ivar root: the one trust anchor.
    :ivar registry: the trusted list parsed by pyHanko, for qualification (``None``: qualification
        cannot be decided and is reported as such).
    :ivar material: extra certificates/CRLs/OCSP the portal fetched from the TSP.
    :ivar trusted_list_source: where the list came from (shown in the report).
    """

    root: x509.Certificate
    registry: TSPRegistry | None
    material: ValidationMaterial
    trusted_list_source: str = "not configured"


def load_registry(tl_xml: str) -> TSPRegistry:
    """Parse an ETSI TS 119 612 trusted list into pyHanko's registry.

    The list's XML signature is not checked (the portal reads it from its own TSP over a channel
    it is configured with); a real validator must check it.
    """
    registry, _errors = trust_list_to_registry_unsafe(tl_xml)
    return registry



@dataclass
class ValidationRun:
    """One validation: trust, the validation time and whether it lies before the lab clock's now."""

    trust: TrustSettings
    moment: dt.datetime
    point_in_time: bool

    def timing(self) -> ValidationTimingInfo:
        return ValidationTimingInfo(validation_time=self.moment, best_signature_time=self.moment,
                                    point_in_time_validation=self.point_in_time)

    def spec(self, knowledge: LocalKnowledge) -> SignatureValidationSpec:
        """Trust the root only; check revocation where a certificate declares it (CRL DP / OCSP
        pointer; a short-term certificate without either relies on its short validity); never fetch."""
        rule = RevocationCheckingRule.CHECK_IF_DECLARED
        policy = CertValidationPolicySpec(
            trust_manager=SimpleTrustManager.build([self.trust.root]),
            revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy(ee_certificate_rule=rule, intermediate_ca_cert_rule=rule),
                                              retroactive_revinfo=self.point_in_time),
        )
        return SignatureValidationSpec(cert_validation_policy=policy, local_knowledge=knowledge,
                                       revinfo_gathering_policy=RevocationInfoGatheringSpec(
                                           online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY))

    def tsp_facts(self, facts: SignatureFacts) -> None:
        """Record the TSP's current certificates and CRLs for this signature; when the validation
        time is after the signer's certificate expired, those about the signer issued after that
        are left out (see :mod:`services.portal.validation`)."""
        for der in self.trust.material.certificates:
            facts.know_certificate(read_only_certificate(der), "tsp")
        for kind, items in (("CRL", self.trust.material.crls), ("OCSP", self.trust.material.ocsps)):
            for der in items:
                fact = revocation_fact(kind, der, "tsp")
                if fact is None:
                    continue
                signer = facts.signer
                issued = fact.produced_at or fact.this_update
                if (signer is not None and self.moment > signer.not_valid_after and fact.covers(signer)
                        and issued and issued > signer.not_valid_after):
                    fact.used = False
                    fact.note = (f"issued after the signer's certificate expired ({iso(signer.not_valid_after)}): it says "
                                 "nothing reliable about it, so it is not used")
                facts.revocation.append(fact)

    @staticmethod
    def knowledge(facts: SignatureFacts, *, tsp_only: bool = False) -> LocalKnowledge:
        """pyHanko's local knowledge: every known certificate and the used revocation objects
        (``tsp_only``: only the TSP's, for the LTA process, which reads the PDF's DSS itself)."""
        used = [r for r in facts.revocation if r.used and (r.source == "tsp" or not tsp_only)]
        return LocalKnowledge(known_crls=[CRLContainer(read_only_crl(r.der)) for r in used if r.kind == "CRL"],
                              known_ocsps=[OCSPContainer(ocsp.OCSPResponse.load(r.der)) for r in used if r.kind == "OCSP"],
                              known_certs=[c.certificate for c in facts.certificates.values()])



def leaf_first(path: ValidationPath) -> list[x509.Certificate]:
    """The certificates of ``path`` from the end entity to the trust anchor (pyHanko iterates from the anchor)."""
    return [c for c in reversed(list(path)) if isinstance(c, x509.Certificate)]



def material_of(facts: SignatureFacts) -> ValidationMaterial:
    """The known certificates and used revocation data, for time-stamp validation."""
    return ValidationMaterial(certificates=[c.certificate.dump() for c in facts.certificates.values()],
                              crls=[r.der for r in facts.revocation if r.used and r.kind == "CRL"],
                              ocsps=[r.der for r in facts.revocation if r.used and r.kind == "OCSP"])

