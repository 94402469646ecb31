"""The ``login_hint`` grammar for headless logins and per-request failure injection.

::

    login_hint = [ "signlab:" ] [ person ] [ "@" means ] *( "!" failure [ "=" number ] )
    person     = a catalogue person id ("kari-nordmann") or the person's national identifier
                 in a usual written form ("14838540105", "790405-2383", "197904052383")
    means      = an eID means id ("no-bankid"); default: the person's best active means that
                 satisfies the requested level
    failure    = a failure name (see services.idp.failures.FAILURES)

Examples: ``kari-nordmann@no-bankid``, ``signlab:14838540105``, ``siri-substans@no-minid!cancel``,
``kari-nordmann!slow=2.5!wrong-nonce``, ``!cancel`` (no person: interactive login, failure armed).

With a person the login is headless: ``/authorize`` answers with the redirect to the client at once.
Without one the login page is shown (failures still apply).

Failure directives are lab fault injection: they are accepted only while the IdP's fault injection
is on (``SIGNLAB_IDP_ADMIN_API_ENABLED``, set by ``signlab up --fault-injection``); otherwise a hint
with a directive is refused as invalid, so nobody can make the IdP stall or fail on request.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.idp.catalogue import Catalogue, EidMeans, Person
from services.idp.failures import Failure, parse_failure

__all__ = ["PREFIX", "LoginHint", "parse_login_hint"]

PREFIX = "signlab:"


@dataclass(frozen=True)
class LoginHint:
    """A parsed login hint."""

    person: Person | None
    means: EidMeans | None
    failures: tuple[Failure, ...]

    @property
    def headless(self) -> bool:
        """True when the hint names a person (no login page)."""
        return self.person is not None


def parse_login_hint(text: str, catalogue: Catalogue, *, failures_allowed: bool) -> LoginHint:
    """Parse ``text``.

    :param failures_allowed: whether failure directives may be given (fault injection is on).
    :raises ValueError: unknown person, means or failure, or a directive while they are not allowed;
        the message names the part and lists the known values.
    """
    body = text.strip()
    if body.lower().startswith(PREFIX):
        body = body[len(PREFIX):]
    head, *failure_parts = body.split("!")
    directives = [part for part in failure_parts if part.strip()]
    if directives and not failures_allowed:
        raise ValueError("failure directives ('!name') are lab fault injection and are off here "
                         "(SIGNLAB_IDP_ADMIN_API_ENABLED=false); send the hint without them")
    failures = tuple(parse_failure(part) for part in directives)
    person_part, sep, means_part = head.partition("@")
    person = None
    if person_part.strip():
        person = catalogue.find_person(person_part)
        if person is None:
            raise ValueError(f"unknown person {person_part.strip()!r} (use a catalogue id such as "
                             f"{catalogue.persons[0].id!r} or a national identifier of a test person)")
    means = None
    if sep:
        means = catalogue.get_means(means_part)
        if means is None:
            raise ValueError(f"unknown eID means {means_part.strip()!r}; known: {', '.join(m.id for m in catalogue.means)}")
        if person is None:
            raise ValueError("an eID means was given without a person")
    return LoginHint(person, means, failures)
