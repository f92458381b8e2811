"""DPO post-training pieces (ONELOC.md section 5), pure PyTorch:

    pairs = PairBuilder(tok, item_spend, cfg.rl)               # candidates -> rewards -> chosen / rejected
    extra = pairs(policy, reference, batch)                    # beam search N candidates per request
    loss, ntp, dpo = DPOObjective(policy, beta, lam)(batch, **extra)

L = L_ntp + lambda * L_dpo, with L_dpo = -log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r))))
averaged over the requests that have a preference (``keep``); ``DPOObjective`` is one module so that DDP
sees every gradient of the step in one forward.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from oneloc.model.beam_search import beam_search
from oneloc.ray_jobs.rewards import preference_pairs, relevance_reward, reward


def dpo_loss(pi_c, pi_r, ref_c, ref_r, beta: float, keep: torch.Tensor) -> torch.Tensor:
    """Mean over kept rows of -log sigmoid(beta * margin); 0 (with a graph) when no row is kept."""
    logits = beta * ((pi_c - ref_c) - (pi_r - ref_r))                           # (B,)
    w = keep.float()
    return -(F.logsigmoid(logits) * w).sum() / w.sum().clamp_min(1.0)


class DPOObjective(nn.Module):
    def __init__(self, policy: nn.Module, beta: float, lam: float):
        super().__init__()
        self.policy, self.beta, self.lam = policy, beta, lam

    def forward(self, batch, chosen, rejected, ref_chosen, ref_rejected, keep):
        """chosen / rejected (B, L) codes; ref_* (B,) reference log-probs; keep (B,) bool."""
        memory = self.policy.encode(batch)
        ntp = self.policy.nll(memory, batch["target_codes"])
        B = chosen.size(0)
        lp = self.policy.sequence_logprob(None, torch.cat([chosen, rejected]), memory.repeat(2))  # (2B,)
        dpo = dpo_loss(lp[:B], lp[B:], ref_chosen, ref_rejected, self.beta, keep)
        return ntp + self.lam * dpo, ntp.detach(), dpo.detach()


class PairBuilder:
    """Beam-search candidates of the current policy, their rewards, and the chosen / rejected codes."""

    def __init__(self, tok, item_spend: np.ndarray, rl_cfg, trie=None):
        self.lat = np.concatenate([[np.nan], tok.lat])                          # (N + 1,) by item index
        self.lng = np.concatenate([[np.nan], tok.lng])
        self.spend = np.asarray(item_spend, np.float64)
        self.max_spend = float(self.spend.max())
        self.cfg, self.trie = rl_cfg, trie if trie is not None else tok.trie()

    def __call__(self, policy, reference, batch: dict) -> dict:
        was_training = policy.training
        policy.eval()
        trie = self.trie.to(batch["user_loc"].device)
        n = self.cfg.candidates
        items, scores = beam_search(policy, batch, trie, k=n, beam=n)            # (B, N), (B, N)
        policy.train(was_training)
        it = items.cpu().numpy()
        valid = it >= 1
        safe = np.where(valid, it, 0)
        user = batch["user_loc"].float().cpu().numpy()                            # (B, 2)
        rel = (relevance_reward(it, batch["target_items"].cpu().numpy()) if self.cfg.relevance == "target"
               else relevance_reward(it, scores=scores.float().cpu().numpy()))
        r = reward(self.lat[safe], self.lng[safe], user[:, 0], user[:, 1], self.spend[safe], rel, self.cfg,
                   self.max_spend)
        ci, ri, keep = preference_pairs(np.where(valid, r, 0.0), valid)
        rows = np.arange(len(it))
        dev = batch["user_loc"].device
        chosen = torch.as_tensor(safe[rows, ci], device=dev)
        rejected = torch.as_tensor(safe[rows, ri], device=dev)
        codes_c, codes_r = policy.item_codes[chosen], policy.item_codes[rejected]   # (B, L)
        with torch.no_grad():
            ref = reference.sequence_logprob(batch, torch.cat([codes_c, codes_r]), reference.encode(batch).repeat(2))
        B = len(it)
        return {"chosen": codes_c, "rejected": codes_r, "ref_chosen": ref[:B].float(),
                "ref_rejected": ref[B:].float(), "keep": torch.as_tensor(keep, device=dev),
                "stats": {"reward_chosen": float(r[rows, ci][keep].mean()) if keep.any() else 0.0,
                          "reward_rejected": float(r[rows, ri][keep].mean()) if keep.any() else 0.0,
                          "pairs": int(keep.sum())}}
