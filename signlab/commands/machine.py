"""``signlab hosts`` and ``signlab dockerd``: what SignLab sets up on the lab machine itself.

* ``hosts`` maps the lab host names of SignLab's certificates (``ca.signlab.example.com``) to
  127.0.0.1 in ``/etc/hosts`` (root), so a validator on this machine can fetch CRLs, OCSP answers
  and issuer certificates; ``--remove`` takes exactly those lines out again (``signlab.hosts``).
* ``dockerd start|stop|status`` runs SignLab's own Docker engine under ``<data dir>/dockerd`` on a
  machine without one (root, Debian's ``docker.io``; ``signlab.docker_host.OwnDockerd``);
  ``signlab ... --engine docker`` finds it there by itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from signlab.commands import CommandError

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``hosts`` and ``dockerd``."""
    hosts = commands.add_parser("hosts", help="map the lab host names in SignLab's certificates to 127.0.0.1 "
                                              "in /etc/hosts (root)")
    hosts.add_argument("--remove", action="store_true", help="remove the lines SignLab added")
    hosts.add_argument("--check", action="store_true", help="only check; exit 1 when a name does not resolve here")
    hosts.set_defaults(handler=_hosts)

    dockerd = commands.add_parser("dockerd", help="SignLab's own Docker engine, for a machine without one (root)")
    dockerd.add_argument("action", choices=["start", "stop", "status"])
    dockerd.set_defaults(handler=_dockerd)


def _hosts(args: argparse.Namespace) -> int:
    from signlab.hosts import lab_host_problems, map_lab_hosts, unmap_lab_hosts

    if args.check:
        problems = lab_host_problems()
        print("\n".join(problems) if problems else "every lab host name resolves to 127.0.0.1 here")
        return 1 if problems else 0
    try:
        lines = unmap_lab_hosts() if args.remove else map_lab_hosts()
    except PermissionError as exc:
        raise CommandError(str(exc)) from None
    print("\n".join(lines) if lines else "nothing to do: /etc/hosts already " +
          ("has no SignLab line" if args.remove else "names every lab host"))
    problems = [] if args.remove else lab_host_problems()
    if problems:
        raise CommandError("; ".join(problems) + " (another line or DNS answer wins over SignLab's)")
    return 0


def _dockerd(args: argparse.Namespace) -> int:
    from signlab.docker_host import OwnDockerd

    own = OwnDockerd(args.data_dir / "dockerd")
    if args.action == "start":
        own.start()
        print(f"export DOCKER_HOST={own.host}   # for docker and docker-compose; signlab finds it by itself")
        return 0
    if args.action == "stop":
        own.stop()
        return 0
    pid = own.pid()
    print(f"SignLab's own dockerd: {'running, pid ' + str(pid) if pid else 'not running'} ({own.root})")
    return 0 if pid else 1
