"""The critic's diagnostic: the explained variance of the returns, reported by every update that trains a value
head."""

import copy
import math

import pytest
import torch

from llamagym.algo import ppo
from llamagym.config import GenerationConfig
from test_fast_update import _episodes, _policy, _update


def test_explained_variance_is_one_for_a_perfect_critic_zero_for_the_mean_and_negative_for_worse():
    returns = torch.tensor([1.0, -1.0, 0.0, 2.0])
    assert ppo.explained_variance(returns.clone(), returns) == pytest.approx(1.0)
    assert ppo.explained_variance(torch.full_like(returns, float(returns.mean())), returns) == pytest.approx(0.0)
    assert ppo.explained_variance(-returns, returns) < 0.0
    # half the spread predicted: Var(r - v) = Var(r / 2) = Var(r) / 4
    assert ppo.explained_variance(returns / 2, returns) == pytest.approx(0.75)
    assert math.isnan(ppo.explained_variance(torch.zeros(3), torch.ones(3)))


def test_an_update_reports_explained_variance_only_with_a_value_head(tiny):
    policy, _ = _policy(tiny)
    episodes = _episodes(policy, GenerationConfig(max_new_tokens=3))
    stats, _ = _update(copy.deepcopy(policy), episodes)
    assert -10.0 < stats["ppo/explained_variance"] <= 1.0
    assert "ppo/explained_variance" not in _update(copy.deepcopy(policy), episodes, advantage="reinforce")[0]
