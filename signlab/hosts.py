"""The lab host names (``services.registry.LAB_HOSTS``) on this machine: mapped to 127.0.0.1 in ``/etc/hosts``.

SignLab writes ``http://ca.signlab.example.com:<port>/…`` into its certificates, CRLs and trusted
list (the linters' rule is in :data:`services.ca.settings.LAB_HOST`). A stock validator on the lab
machine (poppler's ``pdfsig``, Adobe Reader, an EU DSS instance) fetches those URLs through the
system resolver, so the name must resolve to the loopback address where the CA (a local process,
or a container's published port) listens.

:func:`map_lab_hosts` appends one marked line per missing name to ``/etc/hosts``; the marker makes
it reversible (:func:`unmap_lab_hosts` removes exactly those lines and nothing else). Both rewrite
the file in place (a bind-mounted ``/etc/hosts`` cannot be replaced by a rename). Writing needs
root; without it the caller gets the command to run instead.

Limits: names that already resolve (to anything) through DNS or another hosts line are reported
by :func:`lab_host_problems` when they do not point to a loopback address, but never overridden.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
from collections.abc import Callable
from pathlib import Path

from services.registry import LAB_HOSTS

__all__ = ["HOSTS_FILE", "MARKER", "lab_host_problems", "map_lab_hosts", "unmap_lab_hosts"]

HOSTS_FILE = Path("/etc/hosts")
MARKER = "# SignLab lab host (undo: signlab hosts --remove)"
"""Ends every line SignLab adds; the only lines :func:`unmap_lab_hosts` removes."""

FIX = "sudo .venv/bin/signlab hosts"
"""What a user without root runs (the README's virtual environment)."""


def _loopback(name: str) -> bool | None:
    """True: ``name`` resolves to loopback only; False: to something else; None: not at all."""
    try:
        answers = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return None
    return all(ipaddress.ip_address(answer[4][0]).is_loopback for answer in answers)


def lab_host_problems() -> list[str]:
    """Why validators on this machine cannot reach the lab hosts (empty: every name resolves to loopback)."""
    problems = []
    for name in sorted(set(LAB_HOSTS.values())):
        state = _loopback(name)
        if state is None:
            problems.append(f"{name} does not resolve on this machine")
        elif not state:
            problems.append(f"{name} resolves to an address that is not this machine's loopback")
    return problems


Change = Callable[[list[str]], tuple[list[str], list[str]]]


def _rewrite(path: Path, change: Change) -> list[str]:
    """Apply ``change(lines) -> (lines, messages)`` to ``path`` under an exclusive lock, in place."""
    with path.open("r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        lines = handle.read().splitlines()
        new_lines, messages = change(lines)
        if new_lines != lines:
            handle.seek(0)
            handle.write("".join(f"{line}\n" for line in new_lines))
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    return messages


def map_lab_hosts(path: Path = HOSTS_FILE) -> list[str]:
    """Add ``127.0.0.1 <name>`` for each lab host that ``path`` does not name yet; return what was done.

    :raises PermissionError: ``path`` is not writable (not root); the message says what to run.
    """
    names = sorted(set(LAB_HOSTS.values()))

    def change(lines: list[str]) -> tuple[list[str], list[str]]:
        present = {word for line in lines for word in line.split("#", 1)[0].split()[1:]}
        missing = [name for name in names if name not in present]
        return lines + [f"127.0.0.1 {name} {MARKER}" for name in missing], [
            f"added '127.0.0.1 {name}' to {path}: validators on this machine can fetch the URLs in SignLab's "
            f"certificates (undo: signlab hosts --remove)" for name in missing]

    try:
        return _rewrite(path, change)
    except PermissionError:
        raise PermissionError(f"cannot write {path} (not root): run '{FIX}' to map "
                              f"{', '.join(names)} to 127.0.0.1") from None


def unmap_lab_hosts(path: Path = HOSTS_FILE) -> list[str]:
    """Remove the lines :func:`map_lab_hosts` added (and only those); return what was done.

    :raises PermissionError: ``path`` is not writable.
    """
    def change(lines: list[str]) -> tuple[list[str], list[str]]:
        kept = [line for line in lines if not line.rstrip().endswith(MARKER)]
        removed = [line.removesuffix(MARKER).strip() for line in lines if line.rstrip().endswith(MARKER)]
        return kept, [f"removed '{line}' from {path}" for line in removed]

    try:
        return _rewrite(path, change)
    except PermissionError:
        raise PermissionError(f"cannot write {path} (not root): run 'sudo .venv/bin/signlab hosts --remove'") from None
