"""Free disk space of a service's data directory: below a threshold the service is degraded.

Every service keeps its state (databases, audit logs, keys, traces) under its data directory. A
nearly full filesystem must not turn into torn files or generic 500s: :class:`DiskGuard` measures
the free space (``statvfs``: the space an unprivileged writer may still use) and, below the
``DISK_MIN_FREE_MB`` setting, the service frame (:mod:`shared.web`) reports ``/healthz`` as
``degraded`` with the reason and refuses requests that write with 507 ``temporarily_unavailable``
and a plain message. Nothing is latched: the next check after space was freed finds it, so the
service recovers by itself.

Limits: the check runs before a request; an operation already running when the disk fills can
still meet a full disk (the append-only logs of :mod:`shared.audit` then fail whole). The
threshold guards the filesystem of the data directory only.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from shared.errors import InsufficientStorage

__all__ = ["MIB", "DiskGuard", "DiskSpace", "storage_failure"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class DiskSpace:
    """One measurement of the filesystem that holds a data directory."""

    path: Path
    free_bytes: int | None
    """Bytes still available to the service; None when the directory cannot be measured."""
    min_free_bytes: int
    error: str = ""
    """Why it could not be measured (the directory is missing, an I/O error)."""

    @property
    def low(self) -> bool:
        """Below the threshold (or not measurable): writes are refused."""
        return self.free_bytes is None or self.free_bytes < self.min_free_bytes

    def describe(self) -> str:
        """E.g. ``3.1 MiB free on the filesystem of /var/signer (needs 32 MiB)``."""
        if self.free_bytes is None:
            return f"cannot measure the free space of {self.path}: {self.error}"
        return (f"{_mib(self.free_bytes)} free on the filesystem of {self.path} "
                f"(needs {_mib(self.min_free_bytes)})")


class DiskGuard:
    """Measures the free space of ``path``'s filesystem against ``min_free_bytes``.

    :param path: the service's data directory.
    :param min_free_bytes: the threshold; 0 disables the guard (:meth:`check` is never low).
    """

    def __init__(self, path: Path, min_free_bytes: int) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes

    @property
    def enabled(self) -> bool:
        """False when the threshold is 0."""
        return self.min_free_bytes > 0

    def check(self) -> DiskSpace:
        """Measure now (one ``statvfs``: cheap enough for every writing request). A data directory
        not made yet is measured at its nearest existing parent, where it will be made."""
        where = self.path.absolute()
        while not where.exists() and where.parent != where:
            where = where.parent
        try:
            stat = os.statvfs(where)
        except OSError as exc:
            return DiskSpace(self.path, None, self.min_free_bytes, exc.strerror or exc.__class__.__name__)
        return DiskSpace(self.path, stat.f_bavail * stat.f_frsize, self.min_free_bytes)

    def refuse_if_low(self, service: str) -> None:
        """Raise when the disk is below the threshold.

        :param service: who refuses, e.g. ``the signing service (SSASP)``.
        :raises InsufficientStorage: 507, with a plain message saying it resumes by itself.
        """
        if not self.enabled:
            return
        space = self.check()
        if space.low:
            left = "its disk cannot be measured" if space.free_bytes is None else (
                f"only {_mib(space.free_bytes)} of disk space is left (it keeps {_mib(space.min_free_bytes)} free)")
            raise InsufficientStorage(f"{service} cannot store anything right now: {left}; nothing was changed, "
                                      "and it accepts this request again as soon as space is freed")


def storage_failure(exc: BaseException, service: str) -> InsufficientStorage | None:
    """The 507 to answer when ``exc`` (or what caused it) is a full disk met mid-operation — an
    ``OSError`` ENOSPC/EDQUOT or SQLite's "database or disk is full" — else None."""
    seen: BaseException | None = exc
    while seen is not None:
        full = (isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT)) or (
            isinstance(seen, sqlite3.OperationalError) and "disk is full" in str(seen))
        if full:
            return InsufficientStorage(f"{service} could not store the result: its disk is full; the operation "
                                       "did not complete, try again once space is freed")
        seen = seen.__cause__ or seen.__context__
    return None


def _mib(value: int) -> str:
    return f"{value / MIB:.1f} MiB"
