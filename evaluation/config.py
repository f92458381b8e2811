"""Evaluation section of the configuration."""

from __future__ import annotations

from oneloc._section import Section


class EvalConfig(Section):
    ks: tuple[int, ...] = (1, 5, 10, 20)
