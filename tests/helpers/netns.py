"""Hosts for the multi-device tests: Linux network namespaces behind veth pairs (each on its own /24) or on one
bridge (one /24, so multicast reaches every host). Everything is made here and removed on the way out, also when
a test fails; needs root and iproute2. Suites that may run at the same time use different subnets and tags."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def namespaces(count: int, subnet: str = "10.231", tag: str = "ek") -> Iterator[list[tuple[str, str, str]]]:
    """(namespace, host-side veth, worker address) per simulated host, each on its own ``subnet.<i>.0/24``."""
    tag = f"{tag}{os.getpid() % 100000}"
    made = []
    try:
        for i in range(count):
            ns, host_if, ns_if = f"{tag}-{i}", f"{tag}h{i}", f"{tag}n{i}"
            ip("netns", "add", ns)
            made.append((ns, host_if))
            ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            ip("link", "set", ns_if, "netns", ns)
            ip("addr", "add", f"{subnet}.{i}.1/24", "dev", host_if)
            ip("link", "set", host_if, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{subnet}.{i}.2/24", "dev", ns_if)
            ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield [(ns, host_if, f"{subnet}.{i}.2") for i, (ns, host_if) in enumerate(made)]
    finally:
        for ns, host_if in made:
            subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@contextmanager
def bridged(count: int) -> Iterator[list[tuple[str, str]]]:
    """(namespace, address) per host, all on one bridge (10.233.0.0/24) so that multicast (mDNS) reaches them."""
    tag = f"eb{os.getpid() % 100000}"
    bridge = f"{tag}br"
    made = []
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("link", "set", bridge, "up")
        for i in range(count):
            ns, host_if, ns_if = f"{tag}-{i}", f"{tag}h{i}", f"{tag}n{i}"
            ip("netns", "add", ns)
            made.append((ns, host_if))
            ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            ip("link", "set", host_if, "master", bridge)
            ip("link", "set", host_if, "up")
            ip("link", "set", ns_if, "netns", ns)
            ip("netns", "exec", ns, "ip", "addr", "add", f"10.233.0.{i + 2}/24", "dev", ns_if)
            ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield [(ns, f"10.233.0.{i + 2}") for i, (ns, _) in enumerate(made)]
    finally:
        for ns, host_if in made:
            subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)
