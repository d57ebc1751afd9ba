"""PPO maths against hand-computed cases."""

import math

import pytest
import torch

from llamagym.algo import ppo


def test_gae_single_turn_matches_hand_computation():
    # three tokens of one turn, reward 1 on the last; V = [0.5, 0.2, 0.1], gamma within a turn 1, lam 0.5
    rewards = torch.tensor([0.0, 0.0, 1.0])
    values = torch.tensor([0.5, 0.2, 0.1])
    discounts = torch.tensor([1.0, 1.0, 0.0])
    adv, ret = ppo.gae(rewards, values, discounts, lam=0.5)
    d2 = 1.0 - 0.1                      # last step: no bootstrap
    d1 = 0.0 + 0.1 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    a2 = d2
    a1 = d1 + 0.5 * a2
    a0 = d0 + 0.5 * a1
    assert torch.allclose(adv, torch.tensor([a0, a1, a2]))
    assert torch.allclose(ret, adv + values)


def test_gae_discounts_between_turns_only():
    # two turns of one token each; gamma 0.9 between them, lam 1: A0 = r0 + 0.9 * r1 - V0
    rewards = torch.tensor([0.5, 2.0])
    values = torch.tensor([0.3, 0.7])
    adv, _ = ppo.gae(rewards, values, torch.tensor([0.9, 0.0]), lam=1.0)
    assert adv[1].item() == pytest.approx(2.0 - 0.7)
    assert adv[0].item() == pytest.approx(0.5 + 0.9 * 2.0 - 0.3)


def test_gae_lambda_zero_is_one_step_td():
    rewards = torch.tensor([1.0, 0.0, 3.0])
    values = torch.tensor([1.0, 2.0, 0.5])
    adv, _ = ppo.gae(rewards, values, torch.tensor([1.0, 1.0, 0.0]), lam=0.0)
    assert torch.allclose(adv, torch.tensor([1.0 + 2.0 - 1.0, 0.0 + 0.5 - 2.0, 3.0 - 0.5]))


def test_gae_bootstraps_a_truncated_episode_from_the_value_after_it():
    # two turns of one token each, gamma 0.9, lam 0.5, V(s_T) = 2 after the last step
    rewards = torch.tensor([0.5, 1.0])
    values = torch.tensor([0.3, 0.7])
    terminated, _ = ppo.gae(rewards, values, torch.tensor([0.9, 0.0]), lam=0.5, bootstrap=2.0)
    truncated, returns = ppo.gae(rewards, values, torch.tensor([0.9, 0.9]), lam=0.5, bootstrap=2.0)
    assert terminated.tolist() == pytest.approx([0.5 + 0.9 * 0.7 - 0.3 + 0.9 * 0.5 * (1.0 - 0.7), 1.0 - 0.7])
    a1 = 1.0 + 0.9 * 2.0 - 0.7          # the last step sees gamma * V(s_T)
    a0 = 0.5 + 0.9 * 0.7 - 0.3 + 0.9 * 0.5 * a1
    assert truncated.tolist() == pytest.approx([a0, a1])
    assert returns.tolist() == pytest.approx([a0 + 0.3, a1 + 0.7])
    # a discount of 0 ignores the bootstrap: the default, 0, changes nothing for an ended episode
    assert torch.equal(terminated, ppo.gae(rewards, values, torch.tensor([0.9, 0.0]), lam=0.5)[0])


def test_kl_estimators():
    logp = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-1.5, -1.0])
    log_ratio = logp - ref
    assert torch.allclose(ppo.kl_per_token(logp, ref, "k1"), log_ratio)
    assert torch.allclose(ppo.kl_per_token(logp, ref, "abs"), log_ratio.abs())
    assert torch.allclose(ppo.kl_per_token(logp, ref, "mse"), 0.5 * log_ratio ** 2)
    k3 = torch.exp(ref - logp) - 1 - (ref - logp)
    assert torch.allclose(ppo.kl_per_token(logp, ref, "k3"), k3)
    assert (ppo.kl_per_token(logp, ref, "k3") >= 0).all()
    with pytest.raises(ValueError):
        ppo.kl_per_token(logp, ref, "k9")


def test_masked_statistics_ignore_masked_entries():
    values = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert ppo.masked_mean(values, mask).item() == pytest.approx(2.0)
    assert ppo.masked_var(values, mask).item() == pytest.approx(1.0)
    whitened = ppo.masked_whiten(values, mask)
    assert whitened[3].item() == 0.0
    assert ppo.masked_mean(whitened, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert ppo.masked_var(whitened, mask).item() == pytest.approx(1.0, rel=1e-4)


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 0.5, 1.1]))  # ratios 1.5, 0.5, 1.1
    adv = torch.tensor([1.0, -1.0, 1.0])
    mask = torch.ones(3)
    loss, stats = ppo.policy_loss(new, old, adv, mask, cliprange=0.2)
    # token 0: A>0, ratio 1.5 -> clipped to 1.2 -> -1.2 ; token 1: A<0, ratio 0.5 -> max(0.5, 0.8) -> 0.8
    # token 2: inside the range -> -1.1
    expected = (-1.2 + 0.8 - 1.1) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["clipfrac"].item() == pytest.approx(2 / 3)


def test_policy_loss_masks_prompt_and_padding():
    new = torch.tensor([[0.3, 0.0, 0.1]])
    old = torch.zeros(1, 3)
    adv = torch.tensor([[50.0, 1.0, 1.0]])  # the masked entry would dominate if it counted
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    loss, _ = ppo.policy_loss(new, old, adv, mask, cliprange=0.2)
    assert loss.item() == pytest.approx(-(1.0 + math.exp(0.1)) / 2, rel=1e-5)


def test_value_loss_clips_around_old_values():
    values = torch.tensor([1.0, 0.0])
    old = torch.tensor([0.0, 0.0])
    returns = torch.tensor([0.0, 1.0])
    loss, clipfrac = ppo.value_loss(values, old, returns, torch.ones(2), cliprange_value=0.2)
    # token 0: unclipped err (1-0)^2=1, clipped value 0.2 -> err 0.04 -> max 1 ; token 1: both 1
    assert loss.item() == pytest.approx(0.5 * (1.0 + 1.0) / 2)
    assert clipfrac.item() == pytest.approx(0.0)


def test_adaptive_kl_controller_moves_towards_target():
    ctl = ppo.AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(current_kl=12.0, n_steps=10)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    ctl = ppo.AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(current_kl=3.0, n_steps=10)   # error -0.5 clipped to -0.2
    assert ctl.value == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))
    fixed = ppo.FixedKLController(0.3)
    fixed.update(100.0, 10)
    assert fixed.value == 0.3
