"""Test helpers importable by every test package (real servers on loopback, free ports).

Limits: for tests only. :class:`LiveServer` runs a real WSGI app on a real loopback socket in a
thread (werkzeug's threaded server), so clients that need a socket (requests, aiohttp, pyHanko's
CSC client, a browser) talk real HTTP to it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import requests
from flask import Flask
from pydantic import SecretStr
from werkzeug.serving import BaseWSGIServer, make_server

from shared.settings import ServiceSettings, secret_fields

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "LiveServer", "browse_to_portal", "browse_until", "chromium", "confirm_review",
           "fill_filesystem", "free_port", "random_secrets", "small_filesystem"]

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium (``make`` installs the package; never ``playwright install``)."""
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
"""Headless, and off the network: the browser talks to the loopback services only."""


def random_secrets(cls: type[ServiceSettings]) -> dict[str, SecretStr]:
    """A fresh random value for every secret field of ``cls``, as ``signlab up`` generates them.

    Tests build settings with ``cls(**random_secrets(cls), ...)`` so that a secret added to a
    service later does not break them.
    """
    return {name: SecretStr(secrets.token_urlsafe(12)) for name in secret_fields(cls)}


TEST_PORTS_VARIABLE = "SIGNLAB_TEST_PORTS"
"""``FIRST-LAST``: the ports :func:`free_port` hands out in this test session. ``make test`` runs
three sessions at once and gives each its own range below the OS's ephemeral ports, so a port one
session picked (and binds a moment later) is never picked by another, nor taken by an outgoing
connection. Unset: the OS picks."""

_next_port: dict[str, int] = {}
_port_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago: from the session's range
    (:data:`TEST_PORTS_VARIABLE`), in turn, else the one the OS picks."""
    span = os.environ.get(TEST_PORTS_VARIABLE, "")
    if not span:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    first, last = (int(part) for part in span.split("-", 1))
    with _port_lock:
        start = _next_port.get(span, first + secrets.randbelow(last - first + 1))
        for offset in range(last - first + 1):
            port = first + (start - first + offset) % (last - first + 1)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _next_port[span] = first + (port - first + 1) % (last - first + 1)
            return port
    raise OSError(errno.EADDRINUSE, f"no free port in {TEST_PORTS_VARIABLE}={span}")


class LiveServer:
    """Serve ``app`` on 127.0.0.1 in a background thread; use as a context manager.

    :param app: the WSGI app.
    :param port: a port to bind (0: any free port). Bind first, build the app's settings later if
        the app needs to know its own URL: use :meth:`reserve`.
    """

    def __init__(self, app: Flask, port: int = 0) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"live-{app.name}", daemon=True)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def confirm_review(review_url: str, session: requests.Session, *, decision: str = "confirm") -> str:
    """Act as the signer at the portal's review page: open it (the documents and their digests),
    submit ``decision`` with the page's CSRF token; return where the portal sends the browser (the
    SSASP's authorize URL after ``confirm``)."""
    page = session.get(review_url, allow_redirects=False, timeout=60)
    assert page.status_code == 200 and 'class="fingerprint"' in page.text, (review_url, page.status_code, page.text[:500])
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:800]
    posted = session.post(review_url, data={"csrf_token": token.group(1), "decision": decision}, allow_redirects=False,
                          timeout=60)
    assert posted.status_code == 303, (posted.status_code, posted.text[:500])
    return urljoin(review_url, posted.headers["Location"])


def browse_until(url: str, stop_at: str | tuple[str, ...], *, session: requests.Session | None = None,
                 approve: bool = True) -> str:
    """Act as the signer's browser: follow redirects (signer, IdP with a headless ``login_hint``)
    and submit the consent form (its CSRF token, approve or decline) until the next URL starts with
    ``stop_at`` (e.g. the portal's redirect URI); return that URL without opening it.

    Fails the test on anything a browser would not get past (an error page, a redirect loop).
    """
    session = session or requests.Session()
    for _ in range(15):
        if url.startswith(stop_at):
            return url
        answer = session.get(url, allow_redirects=False, timeout=60)
        if answer.status_code in (302, 303):
            url = urljoin(url, answer.headers["Location"])
            continue
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:500])
        token = re.search(r'name="csrf_token" value="([^"]+)"', answer.text)
        action = re.search(r'<form method="post" action="([^"]+)"', answer.text)
        assert token and action, answer.text[:800]
        posted = session.post(urljoin(url, action.group(1)), allow_redirects=False, timeout=60,
                              data={"csrf_token": token.group(1), "decision": "approve" if approve else "decline"})
        assert posted.status_code == 303, posted.text[:500]
        url = urljoin(url, posted.headers["Location"])
    raise AssertionError("too many redirects")


def browse_to_portal(url: str, portal: str | tuple[str, ...], *, session: requests.Session,
                     approve: bool = True, timeout: float = 120) -> requests.Response:
    """:func:`browse_until` the portal's callback, open it, and when the portal sends the browser
    back to the signing service (certificate first: the person approves the hashes there) go
    through that round too; the portal's last answer, not followed."""
    for _ in range(3):
        back = browse_until(url, portal, session=session, approve=approve)
        answer = session.get(back, allow_redirects=False, timeout=timeout)
        location = answer.headers.get("Location", "")
        if not (answer.status_code == 303 and "/oauth2/authorize?" in location):
            return answer
        url = urljoin(back, location)
    raise AssertionError("the portal sent the browser to the signing service more than twice")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright (sync API); the test is skipped, with the reason, only
    when it is not installed or cannot be launched."""
    import pytest
    from playwright.sync_api import Error, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (make installs Debian's chromium package)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Error as exc:
            pytest.skip(f"Chromium cannot be launched: {str(exc).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def small_filesystem(path: Path, size_mib: int = 16) -> Iterator[Path]:
    """A real, small filesystem (tmpfs of ``size_mib`` MiB) mounted at ``path`` (created if
    missing) for the duration of the block, then unmounted; for tests of full disks.

    Skips the calling test with the exact reason when it cannot be mounted (mounting needs root,
    and in a container also the CAP_SYS_ADMIN capability).
    """
    import pytest  # test helpers only

    if os.geteuid() != 0:
        pytest.skip(f"mounting a {size_mib} MiB tmpfs needs root (running as uid {os.geteuid()})")
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("mounting a tmpfs needs the mount command (util-linux), which is not installed")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path}: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        for _ in range(50):  # a process that is being stopped may still hold a file open
            if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)


def fill_filesystem(directory: Path) -> Path:
    """Take every free byte of the filesystem holding ``directory`` with one filler file; delete
    the returned file to free the space again."""
    fd, name = tempfile.mkstemp(prefix="filler-", dir=directory)
    block = b"\0" * (1 << 20)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]  # the last pages, down to the last byte
    finally:
        os.close(fd)
    return Path(name)
