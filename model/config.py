"""Model section of the configuration: sizes and the switches of each geo component."""

from __future__ import annotations

from oneloc._section import Section


class ModelConfig(Section):
    size: str = "default"
