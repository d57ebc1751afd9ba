"""PPO maths on token sequences: masked statistics, KL estimates, GAE, clipped losses and KL controllers.

Pure functions of tensors, so each one can be checked against a hand-computed case.
"""

from __future__ import annotations

import math

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is 1."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of `values` where `mask` is 1 (0 for fewer than two elements)."""
    count = mask.sum()
    mean = masked_mean(values, mask)
    squares = (((values - mean) ** 2) * mask).sum()
    return squares / (count - 1) if count > 1 else torch.zeros_like(squares)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise `values` to unit variance (and zero mean) over the masked elements."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the log-probs of the sampled tokens.

    k1 = log ratio (unbiased, can be negative); abs = |k1|; mse = k1²/2; k3 = (r - 1) - log r with r = ref/policy
    (unbiased and never negative).
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "abs":
        return log_ratio.abs()
    if estimator == "mse":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use k1, abs, mse or k3")


def gae(rewards: torch.Tensor, values: torch.Tensor, discounts: torch.Tensor, lam: float,
        bootstrap: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over one episode's sequence of steps (tokens across turns).

    `discounts[t]` multiplies the value of step t+1: 1 between tokens of one turn, gamma between turns; after the
    last step 0 (the episode ended) or gamma, times `bootstrap`, the value of the state a truncated episode was cut
    at. Returns (advantages, returns) with returns = advantages + values.
    """
    advantages = torch.zeros_like(rewards)
    next_advantage = rewards.new_zeros(())
    next_value = rewards.new_tensor(bootstrap)
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + discounts[t] * next_value - values[t]
        next_advantage = delta + discounts[t] * lam * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate objective (as a loss to minimise) and its diagnostics."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(0.5 * log_ratio.square(), mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 − Var(returns − values) / Var(returns): how much of the returns' spread the value head predicts (1: all,
    0: no better than a constant, negative: worse); nan when the returns do not vary."""
    spread = float(returns.var(unbiased=False))
    if spread == 0.0:
        return float("nan")
    return 1.0 - float((returns - values).var(unbiased=False)) / spread


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss (half the larger squared error) and the fraction of clipped predictions."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_error = (values - returns).square()
    clipped_error = (clipped_values - returns).square()
    loss = 0.5 * masked_mean(torch.max(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped_error > unclipped_error).float(), mask)
    return loss, clipfrac


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


class AdaptiveKLController(FixedKLController):
    """Adaptive KL coefficient (Ziegler et al. 2019): grows when KL overshoots the target, shrinks below it."""

    def __init__(self, kl_coef: float, target: float, horizon: int):
        super().__init__(kl_coef)
        self.target, self.horizon = target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            return
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
