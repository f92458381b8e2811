"""Model section of the configuration: sizes, the tokenizer, and the switches of each geo component.

    cfg.model.size = "tiny" | "default" | "large"     # preset dimensions, see SIZES
    cfg.model.d_model = 256                           # any explicit value overrides the preset
    cfg.model.geo_ids / attn_bias / gate / prompt / copy_head  # ablation switches (False removes the module)
    cfg.model.transitions = 20                        # transition candidates (model/transitions.py)
    cfg.model.nearby = 64                             # nearby new-place candidates (model/nearby.py)

``ctx_dim`` (C, the length of a location-context vector) is 0 by default: it is then taken from the
context vectors the tokenizer was fitted on (``build_model``), so the model accepts any C.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from oneloc._section import Section

# name -> (d_model, n_heads, enc_layers, dec_layers, d_ff)
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (32, 2, 1, 1, 64),          # unit tests
    "default": (128, 4, 2, 2, 512),     # CPU-servable
    "large": (512, 8, 6, 6, 2048),      # GPUs
}


class TokenizerConfig(Section):
    """Geo-aware semantic IDs: balanced residual K-means over [own embedding ; location context]."""

    levels: int = Field(default=3, description="residual K-means levels (a disambiguation code is added)")
    codebook_size: int = 64
    kmeans_iters: int = 15
    cf_dim: int = Field(default=32, description="collaborative (PPMI co-visitation SVD) embedding size")
    cf_window: int = Field(default=3, description="co-visitation window within a sequence")
    w_category: float = 1.0
    w_cf: float = 1.0
    w_ctx: float = 1.0
    seed: int = 0
    spare_codes: int = Field(default=8, ge=0, description="extra codes of the last (disambiguation) level, for "
                             "places that reach the catalog after training (model/new_places.reserve_codes)")


class ModelConfig(Section):
    size: Literal["tiny", "default", "large"] = "default"
    d_model: int | None = None
    n_heads: int | None = None
    enc_layers: int | None = None
    dec_layers: int | None = None
    d_ff: int | None = None
    dropout: float = 0.1
    max_history: int = Field(default=50, description="T, events of history fed to the encoder")
    ctx_dim: int = Field(default=0, description="C; 0 = from the tokenizer's context vectors")
    prompt_tokens: int = Field(default=4, description="P, neighbor-aware prompt tokens")
    geo_bias_dim: int = Field(default=16, description="per-head size of the projected E_lc")
    # ablation switches: each geo component is removed entirely when False
    geo_ids: bool = True
    attn_bias: bool = True
    gate: bool = True
    prompt: bool = True
    copy_head: bool = Field(default=True, description="history copy head (model/copy.py): point at the user's own events")
    transitions: int = Field(default=0, ge=0, description="S successor candidates of the latest event "
                             "(model/transitions.py); 0 = none (20 measured no better on validation)")
    nearby: int = Field(default=0, ge=0, description="S' nearby candidates: the most visited places in the "
                        "request's H3 ring not in the history (model/nearby.py); 0 = none")
    nearby_ring: int = Field(default=1, ge=0, description="k of the H3 k-ring the nearby candidates come from")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)

    def dims(self) -> tuple[int, int, int, int, int]:
        """(d_model, n_heads, enc_layers, dec_layers, d_ff): the preset, with explicit values over it."""
        preset = SIZES[self.size]
        given = (self.d_model, self.n_heads, self.enc_layers, self.dec_layers, self.d_ff)
        return tuple(g if g is not None else p for g, p in zip(given, preset, strict=True))  # type: ignore[return-value]
