"""``signlab hosts``: the lab host lines in a hosts file — added once, marked, removed exactly."""

from __future__ import annotations

from pathlib import Path

from services.registry import LAB_HOSTS
from signlab.hosts import MARKER, map_lab_hosts, unmap_lab_hosts

ORIGINAL = "127.0.0.1 localhost\n# a comment naming ca.signlab.example.com\n::1 localhost ip6-localhost\n"


def test_map_adds_one_marked_loopback_line_per_lab_host_once(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(ORIGINAL)
    messages = map_lab_hosts(hosts)
    names = sorted(set(LAB_HOSTS.values()))
    assert len(messages) == len(names) and all("signlab hosts --remove" in m for m in messages)
    assert hosts.read_text() == ORIGINAL + "".join(f"127.0.0.1 {name} {MARKER}\n" for name in names)
    assert map_lab_hosts(hosts) == [] and hosts.read_text().count(MARKER) == len(names)  # idempotent


def test_a_name_the_file_already_maps_is_left_alone(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(ORIGINAL + f"10.0.0.5 {LAB_HOSTS['ca']}\n")
    assert map_lab_hosts(hosts) == []
    assert MARKER not in hosts.read_text()


def test_unmap_removes_exactly_the_marked_lines(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(ORIGINAL)
    map_lab_hosts(hosts)
    with hosts.open("a") as handle:
        handle.write("192.0.2.7 added-later\n")
    removed = unmap_lab_hosts(hosts)
    assert removed and all(f"127.0.0.1 {LAB_HOSTS['ca']}" in line for line in removed)
    assert hosts.read_text() == ORIGINAL + "192.0.2.7 added-later\n"
    assert unmap_lab_hosts(hosts) == []
