"""Evaluation section of the configuration."""

from __future__ import annotations

from pydantic import Field

from oneloc._section import Section


class EvalConfig(Section):
    ks: tuple[int, ...] = Field(default=(1, 5, 10, 20), description="Acc@k cut-offs")
    ndcg_ks: tuple[int, ...] = (5, 10)
    geo_ks: tuple[int, ...] = Field(default=(1, 10), description="distance@k and GMV@k cut-offs")
    baselines: tuple[str, ...] = ("most-popular", "nearest-popular", "user-history", "markov", "blend", "sasrec")
    sasrec_epochs: int = Field(default=12, description="epochs of the SASRec baseline (best on validation kept)")
    sasrec_seed: int = 0
    oneloc_max_k: int = Field(default=50, description="OneLoc's ranked list length (beam search top-k); "
                              "MRR counts targets beyond it as 0")
    nearby_biases: tuple[float, ...] = Field(default=(-2.0, -1.0, 0.0, 1.0, 2.0, 4.0), description="a checkpoint with nearby "
                                             "candidates: its pointer bias toward them (model/nearby.py) is chosen "
                                             "on validation MRR from these; () = 0")
    report_name: str = Field(default="eval", description="report file stem under storage.reports")
