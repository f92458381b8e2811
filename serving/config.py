"""Serve section of the configuration."""

from __future__ import annotations

from oneloc._section import Section


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8000
