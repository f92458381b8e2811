"""Free TCP ports on 127.0.0.1, for the local processes the project starts side by side (Serve's side
ports, benchmark apps, test brokers): several clusters on one machine must not share fixed ports."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now (each stays bound until all are
    picked, so that they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
