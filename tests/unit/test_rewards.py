"""Rewards of the RL post-training and the DPO pair selection, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oneloc.ray_jobs.config import RLConfig
from oneloc.ray_jobs.dpo import dpo_loss
from oneloc.ray_jobs.rewards import geo_reward, gmv_reward, preference_pairs, relevance_reward, reward


def test_geo_reward_decreases_with_distance():
    r = geo_reward(np.array([0.0, 1.0, 2.0, 10.0]), tau_km=2.0)
    assert r[0] == 1.0
    assert r[1] == pytest.approx(math.exp(-0.5)) and r[2] == pytest.approx(math.exp(-1.0))
    assert np.all(np.diff(r) < 0)
    with pytest.raises(ValueError):
        geo_reward(np.array([1.0]), tau_km=0.0)


def test_gmv_reward_normalised_and_clipped():
    np.testing.assert_allclose(gmv_reward(np.array([0.0, 25.0, 50.0, 80.0]), 50.0), [0.0, 0.5, 1.0, 1.0])


def test_relevance_target_and_score():
    items = np.array([[3, 7, 9], [1, 2, 4]])
    np.testing.assert_array_equal(relevance_reward(items, np.array([7, 5])), [[0, 1, 0], [0, 0, 0]])
    p = relevance_reward(items, scores=np.log(np.array([[0.2, 0.2, 0.1], [0.5, 0.25, 0.25]])))
    np.testing.assert_allclose(p, [[0.4, 0.4, 0.2], [0.5, 0.25, 0.25]])


def test_total_reward_by_hand():
    cfg = RLConfig(w_geo=2.0, w_gmv=1.0, w_relevance=3.0, tau_km=1.0)
    # user at (0, 0); candidate 0 at the user, candidate 1 one degree of latitude north (111.19 km)
    r = reward(np.array([[0.0, 1.0]]), np.array([[0.0, 0.0]]), np.array([0.0]), np.array([0.0]),
               np.array([[10.0, 40.0]]), np.array([[0.0, 1.0]]), cfg, max_spend=40.0)
    d1 = 6371.0088 * math.radians(1.0)
    np.testing.assert_allclose(r, [[2.0 + 0.25, 2 * math.exp(-d1) + 1.0 + 3.0]])


def test_preference_pairs_best_worst_valid_only():
    r = np.array([[0.5, 0.9, 0.1, 5.0],      # the 5.0 is invalid: best valid is column 1
                  [1.0, 1.0, 1.0, 1.0],      # all equal: no preference
                  [0.3, 0.0, 0.0, 0.0]])     # one valid candidate: no pair
    valid = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    chosen, rejected, keep = preference_pairs(r, valid)
    assert chosen[0] == 1 and rejected[0] == 2
    np.testing.assert_array_equal(keep, [True, False, False])


def test_dpo_loss_by_hand():
    pi_c, pi_r = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    ref_c, ref_r = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    beta = 0.5
    # margins: (1 - -1) = 2 -> -log sigmoid(1); (0 - 1) = -1 -> -log sigmoid(-0.5)
    want = (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(0.5)))) / 2
    assert float(dpo_loss(pi_c, pi_r, ref_c, ref_r, beta, torch.tensor([True, True]))) == pytest.approx(want)
    only_first = float(dpo_loss(pi_c, pi_r, ref_c, ref_r, beta, torch.tensor([True, False])))
    assert only_first == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))
    assert float(dpo_loss(pi_c, pi_r, ref_c, ref_r, beta, torch.tensor([False, False]))) == 0.0
