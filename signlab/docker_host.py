"""A Docker engine and the SignLab image where the machine has no engine running and no Docker Hub.

Three things a fresh Debian machine lacks; each is made once and cached:

* **An engine.** :func:`acquire_engine` uses the engine the machine has (``DOCKER_HOST``, else
  ``/var/run/docker.sock``, else SignLab's own from an earlier ``signlab dockerd start``). With
  none and as root, :class:`OwnDockerd` starts Debian's ``dockerd`` (package ``docker.io``) with
  everything under one folder of its own: data root, exec root, pid file, log and the unix socket.
  Its networking leaves the machine as it was: ``--bridge=none --iptables=false
  --ip-forward=false --ip-masq=false`` — no ``docker0``, no iptables chains, no sysctl change.
  Containers still reach each other on the deployment's own bridge network (removed with it),
  published ports go through ``docker-proxy`` on 127.0.0.1, and nothing reaches out. It is stopped
  by its pid (SIGTERM; the engine stops its containers and unmounts its data root).
* **A base image.** The official ``python:3.11-slim-bookworm`` when the engine has it or can pull
  it; otherwise ``signlab-base:bookworm-<hash>``, made with ``debootstrap`` (minbase plus
  :data:`DEBIAN_BASE_PACKAGES`) from the Debian mirror in the host's apt sources and loaded with
  ``docker import``. The tag's hash is of the suite and the package list; the root file system's
  tarball is kept under the cache folder, so a second engine (or a pruned one) imports it again in
  seconds.
* **A wheelhouse.** ``compose/wheelhouse``: ``pip wheel`` of the project's runtime dependencies on
  the host, redone when they change. The Dockerfile then installs with ``pip install --no-index
  --find-links``.

:func:`build_image` builds ``compose/Dockerfile`` from those: on the Debian base with no network
at all (``network_mode=none``: SoftHSM2 is in the base, the wheels in the context); on the official
image with the engine's network (it installs SoftHSM2 from the Debian mirror, as for a user with
Docker Hub).

Limits: Linux hosts only (debootstrap, dockerd); the wheels are the host's (``pip wheel`` picks
them for the host's Python 3.11 and glibc), so the host must be no newer than Debian bookworm's
glibc or have pure-Python fallbacks — true on the Debian 12 machines this is built for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signlab.errors import EXIT_USAGE, CliError
from signlab.runtime import RuntimeError_

__all__ = [
    "DEBIAN_BASE_PACKAGES",
    "OFFICIAL_BASE",
    "EngineLease",
    "EngineUnavailable",
    "OwnDockerd",
    "acquire_engine",
    "build_image",
    "compose_command",
    "debian_mirror",
    "ensure_base_image",
    "ensure_wheelhouse",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = REPO_ROOT / "compose" / "wheelhouse"
DEFAULT_SOCKET = Path("/var/run/docker.sock")
OFFICIAL_BASE = "python:3.11-slim-bookworm"
"""The Dockerfile's default base (Docker Hub)."""
SUITE = "bookworm"
DEBIAN_BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "softhsm2", "poppler-utils")
"""What the Debian base holds on top of debootstrap's minbase: Python 3.11 with venv, CA
certificates, SoftHSM2 (the signer's HSM), poppler-utils (the portal's page previews) — everything
the Dockerfile would otherwise fetch from the Debian mirror."""

Progress = Callable[[str], None]


class EngineUnavailable(CliError):
    """No Docker engine (or base image) can be had here; the message is the exact reason."""

    exit_code = EXIT_USAGE  # a missing prerequisite


# -- an engine ---------------------------------------------------------------------------------


def _answers(host: str, timeout: float = 5.0) -> str | None:
    """None when the engine at ``host`` answers a ping; else why not."""
    import docker
    from docker.errors import DockerException

    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return f"no engine socket at {host.removeprefix('unix://')}"
    try:
        client = docker.DockerClient(base_url=host, version="1.41", timeout=int(timeout))
    except DockerException as exc:
        return f"{exc.__class__.__name__}: {exc}"
    try:
        client.ping()
    except Exception as exc:  # docker's and requests' connection errors alike  # noqa: BLE001
        return f"{exc.__class__.__name__}: {str(exc)[:200]}"
    finally:
        client.close()
    return None


class OwnDockerd:
    """Debian's ``dockerd``, run by SignLab with everything under ``root`` (see the module text).

    :param root: its folder: ``data/`` (images, volumes), ``exec/`` (runtime state), ``dockerd.pid``,
        ``dockerd.log`` and ``docker.sock``.
    """

    FLAGS = ("--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false")
    """Networking that changes nothing on the host (no docker0, no iptables rules, no sysctl)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.socket = self.root / "docker.sock"
        self.pid_file = self.root / "dockerd.pid"
        self.log_file = self.root / "dockerd.log"
        self.data_root = self.root / "data"
        # Unix socket paths are limited to 107 bytes, and containerd nests its sockets two levels
        # under the exec root: a deep checkout gets a short exec root of its own under /tmp.
        exec_root = self.root / "exec"
        if len(str(exec_root)) > 60:
            exec_root = Path(tempfile.gettempdir()) / f"signlab-dockerd-{hashlib.sha256(bytes(self.root)).hexdigest()[:12]}"
        self.exec_root = exec_root
        self._process: subprocess.Popen[bytes] | None = None  # when this object started it: reaped by stop()

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value of this engine."""
        return f"unix://{self.socket}"

    def pid(self) -> int | None:
        """The pid of this engine's running dockerd (checked against its command line), or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        if not cmdline or not cmdline[0].endswith(b"dockerd") or f"--data-root={self.data_root}".encode() not in cmdline:
            return None  # a recycled pid
        return pid

    def start(self, progress: Progress = print, timeout: float = 60.0) -> int:
        """Start dockerd (as root) and wait until it answers; return its pid.

        :raises EngineUnavailable: not root, no dockerd binary, or it does not come up (log tail given).
        """
        running = self.pid()
        if running is not None:
            return running
        if os.geteuid() != 0:
            raise EngineUnavailable("not root: SignLab can start its own dockerd only as root")
        binary = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
        if binary is None:
            raise EngineUnavailable("dockerd is not installed (Debian package docker.io; 'make test' installs it as root)")
        for folder in (self.root, self.data_root, self.exec_root):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)  # left by a killed engine; dockerd refuses to start on it
        command = [binary, f"--data-root={self.data_root}", f"--exec-root={self.exec_root}",
                   f"--pidfile={self.pid_file}", f"--host={self.host}", *self.FLAGS]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self._process = process
        deadline = time.monotonic() + timeout
        while (problem := _answers(self.host)) is not None:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=30)
                raise EngineUnavailable(f"dockerd did not come up ({problem}); last lines of {self.log_file}:\n{tail}")
            time.sleep(0.3)
        progress(f"started SignLab's own dockerd (pid {process.pid}, socket {self.socket}, data {self.data_root})")
        return process.pid

    def stop(self, progress: Progress = print, timeout: float = 90.0) -> str:
        """Stop this engine by its pid: SIGTERM, then wait (it stops its containers first)."""
        pid = self.pid()
        if pid is None:
            return "SignLab's own dockerd is not running"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists():
            # Only after the grace period: a hung engine must not outlive the run.
            os.kill(pid, signal.SIGKILL)
            message = f"dockerd (pid {pid}) did not stop within {timeout:g} s of SIGTERM: killed"
        else:
            message = f"stopped SignLab's own dockerd (pid {pid}, SIGTERM)"
        if self._process is not None and self._process.pid == pid:
            self._process.wait(timeout=30)
            self._process = None
        else:
            _reap(pid)
        self.socket.unlink(missing_ok=True)
        progress(message)
        return message


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is this process's child (started by another OwnDockerd object)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@dataclass
class EngineLease:
    """An engine to use: the machine's, or SignLab's own started for this lease.

    :ivar host: its ``DOCKER_HOST`` value.
    :ivar own: the engine started for this lease (stopped by :meth:`release`), or None.
    :ivar description: what it is, for logs.
    """

    host: str
    own: OwnDockerd | None
    description: str

    def client(self) -> Any:
        """A ``docker.DockerClient`` for this engine."""
        import docker

        return docker.DockerClient(base_url=self.host, timeout=120)

    def release(self, progress: Progress = print) -> None:
        """Stop the engine if this lease started it."""
        if self.own is not None:
            self.own.stop(progress)


def acquire_engine(own_root: Path, progress: Progress = print) -> EngineLease:
    """An engine that answers: ``DOCKER_HOST``, the default socket, SignLab's own already running,
    or SignLab's own started now (as root).

    :raises EngineUnavailable: none answers and SignLab cannot start its own (the reason).
    """
    own = OwnDockerd(own_root)
    configured = os.environ.get("DOCKER_HOST")
    if configured:
        problem = _answers(configured)
        if problem is None:
            return EngineLease(configured, None, f"the engine at DOCKER_HOST={configured}")
        raise EngineUnavailable(f"DOCKER_HOST={configured} does not answer ({problem})")
    if _answers(f"unix://{DEFAULT_SOCKET}") is None:
        return EngineLease(f"unix://{DEFAULT_SOCKET}", None, f"the machine's engine at {DEFAULT_SOCKET}")
    if own.pid() is not None and _answers(own.host) is None:
        return EngineLease(own.host, None, f"SignLab's own dockerd already running at {own.socket}")
    own.start(progress)
    return EngineLease(own.host, own, f"SignLab's own dockerd at {own.socket} (started for this run)")


def compose_command() -> list[str] | None:
    """``docker compose`` (v2) when the docker CLI has the plugin, else Debian's ``docker-compose``
    (v1.29), else None."""
    docker_cli = shutil.which("docker")
    if docker_cli and subprocess.run([docker_cli, "compose", "version"], capture_output=True,
                                     timeout=30).returncode == 0:
        return [docker_cli, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


# -- a base image ------------------------------------------------------------------------------


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The first Debian mirror of the host's apt sources that serves :data:`SUITE` (deb822
    ``*.sources`` or one-line ``sources.list``).

    :raises EngineUnavailable: no such mirror is configured.
    """
    candidates: list[tuple[str, list[str]]] = []
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.MULTILINE))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                candidates += [(uri, fields.get("Suites", "").split()) for uri in fields.get("URIs", "").split()]
    for path in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    candidates.append((words[1], [words[2]]))
    for uri, suites in candidates:
        if SUITE in suites:
            return uri
    raise EngineUnavailable(f"no Debian mirror for {SUITE} in {sources} (needed to build the base image)")


def base_tag() -> str:
    """``signlab-base:bookworm-<hash of suite and packages>``."""
    key = hashlib.sha256(json.dumps([SUITE, sorted(DEBIAN_BASE_PACKAGES)]).encode()).hexdigest()[:12]
    return f"signlab-base:{SUITE}-{key}"


def _has_image(client: Any, name: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


def ensure_base_image(client: Any, cache_dir: Path, progress: Progress = print) -> str:
    """The base for the Dockerfile: the official image if present or pullable, else the Debian base
    (made with debootstrap once, then cached as an image and a tarball).

    :raises EngineUnavailable: neither can be had (not root, no debootstrap, no mirror).
    """
    if _has_image(client, OFFICIAL_BASE):
        progress(f"base image: {OFFICIAL_BASE} (already on the engine)")
        return OFFICIAL_BASE
    repository, tag = OFFICIAL_BASE.split(":")
    try:
        client.images.pull(repository, tag=tag)
        progress(f"base image: {OFFICIAL_BASE} (pulled from Docker Hub)")
        return OFFICIAL_BASE
    except Exception as exc:  # noqa: BLE001 - no Docker Hub: the reason goes into the log line
        reason = str(getattr(exc, "explanation", None) or exc).splitlines()[0][:160]
    name = base_tag()
    if _has_image(client, name):
        progress(f"base image: {name} (Debian packages; cached on the engine; {OFFICIAL_BASE} unavailable: {reason})")
        return name
    tarball = cache_dir / f"{name.replace(':', '_')}.tar"
    started = time.monotonic()
    if not tarball.exists():
        _debootstrap(tarball, progress)
        how = f"made with debootstrap in {time.monotonic() - started:.0f} s"
    else:
        how = f"from the cached {tarball}"
    client.api.import_image_from_file(str(tarball), repository=name.split(":")[0], tag=name.split(":")[1])
    progress(f"base image: {name} (Debian packages, {how}; {OFFICIAL_BASE} unavailable: {reason})")
    return name


def _debootstrap(tarball: Path, progress: Progress) -> None:
    """Make the Debian base's root file system with debootstrap and keep it as ``tarball``."""
    if os.geteuid() != 0:
        raise EngineUnavailable(f"{OFFICIAL_BASE} cannot be pulled and building the Debian base needs root (debootstrap)")
    binary = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None)
    if binary is None:
        raise EngineUnavailable(f"{OFFICIAL_BASE} cannot be pulled and debootstrap is not installed "
                                "(Debian package debootstrap; 'make test' installs it as root)")
    mirror = debian_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    progress(f"building the Debian base with debootstrap ({SUITE}, minbase + {', '.join(DEBIAN_BASE_PACKAGES)}) "
             f"from {mirror} ...")
    try:
        result = subprocess.run([binary, "--variant=minbase", f"--include={','.join(DEBIAN_BASE_PACKAGES)}",
                                 SUITE, str(rootfs), mirror], capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            raise EngineUnavailable(f"debootstrap failed ({result.returncode}): {result.stdout[-1500:]}{result.stderr[-1500:]}")
        # Package caches and lists are not part of an image.
        for leftover in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            leftover.unlink()
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True,
                       capture_output=True, timeout=600)
        partial.rename(tarball)
    finally:
        _unmount_below(rootfs)  # debootstrap mounts /proc (and more) inside; a failed run may leave them
        shutil.rmtree(rootfs, ignore_errors=True)


def _unmount_below(folder: Path) -> None:
    """Unmount every mount point at or below ``folder`` (deepest first), so removing it cannot
    reach into /proc, /sys or /dev."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    below = [m for m in mounts if m == str(folder) or m.startswith(f"{folder}/")]
    for mount in sorted(below, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], capture_output=True, timeout=60)


# -- a wheelhouse ------------------------------------------------------------------------------


def runtime_requirements() -> list[str]:
    """The project's runtime requirements (pyproject.toml) plus its build backend."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return [*project["project"]["dependencies"], *project["build-system"]["requires"]]


def ensure_wheelhouse(progress: Progress = print, directory: Path = WHEELHOUSE) -> Path:
    """``compose/wheelhouse`` with a wheel of every runtime requirement (``pip wheel`` on the host,
    redone when the requirements or the host's Python change)."""
    requirements = runtime_requirements()
    stamp = directory / ".requirements"
    key = "\n".join([sys.version.split()[0], *requirements]) + "\n"
    if stamp.exists() and stamp.read_text() == key and any(directory.glob("*.whl")):
        progress(f"wheelhouse: {len(list(directory.glob('*.whl')))} wheels in {directory} (up to date)")
        return directory
    for old in directory.glob("*.whl"):
        old.unlink()
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(requirements) + "\n")
        listing.flush()
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(directory),
                                 "--requirement", listing.name], capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise RuntimeError_(f"pip wheel failed: {result.stderr[-2000:]}")
    stamp.write_text(key)
    progress(f"wheelhouse: {len(list(directory.glob('*.whl')))} wheels built with pip wheel in "
             f"{time.monotonic() - started:.0f} s ({directory})")
    return directory


# -- the image ---------------------------------------------------------------------------------


def build_image(client: Any, tag: str, *, base: str, progress: Progress = print) -> float:
    """Build ``compose/Dockerfile`` as ``tag`` on ``base``; return the seconds it took.

    The Debian base needs nothing from outside: no network at all. The official image installs
    SoftHSM2 from the Debian mirror through the host's network (SignLab's own engine has no default
    bridge to give the build).
    """
    from signlab.docker_engine import DOCKERFILE, build_context

    network = "host" if base == OFFICIAL_BASE else "none"
    started = time.monotonic()
    try:
        client.images.build(fileobj=build_context(REPO_ROOT), custom_context=True, dockerfile=DOCKERFILE, tag=tag,
                            buildargs={"BASE_IMAGE": base}, network_mode=network, rm=True, pull=False)
    except Exception as exc:  # docker.errors.BuildError / APIError: keep the engine's reason
        raise RuntimeError_(f"building the image failed: {exc}") from None
    seconds = time.monotonic() - started
    progress(f"image built: {tag} on {base} in {seconds:.0f} s (network in the build: {network})")
    return seconds
