"""The PPO update: response-only log-probs under padding, reference by disabled adapters, learning direction,
non-finite losses kept away from the weights."""

import math

import pytest
import torch

from llamagym.config import LoraConfig, PPOConfig
from llamagym.agent.episode import Episode, Turn
from llamagym.errors import ConfigError, TrainingError
from llamagym.policy.models import add_lora
from llamagym.algo.trainer import PPOTrainer, Sample, make_batch
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead


def _lora_policy(tiny):
    model, tokenizer = tiny
    return AutoModelForCausalLMWithValueHead(add_lora(model, LoraConfig(r=4, alpha=8))), tokenizer


def test_response_logprobs_ignore_prompt_and_padding(tiny):
    from trl.trainer.utils import selective_log_softmax

    model, tokenizer = tiny
    policy = AutoModelForCausalLMWithValueHead(model).eval()
    samples = [Sample([5, 6, 7, 8, 9], [10, 11], 0.0, 0), Sample([5], [12, 13, 14], 0.0, 0)]
    batch = make_batch(samples, tokenizer.pad_token_id, torch.device("cpu"))
    assert batch.mask.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    with torch.no_grad():
        logits, values = policy.response_logits_and_values(batch.input_ids, batch.attention_mask, batch.k)
        batched = selective_log_softmax(logits, batch.targets)
        for row, sample in enumerate(samples):
            ids = torch.tensor([sample.query + sample.response])
            full = torch.log_softmax(model(ids).logits[0].float(), -1)
            n = len(sample.response)
            expected = full[-n - 1:-1].gather(-1, torch.tensor(sample.response)[:, None]).squeeze(-1)
            assert torch.allclose(batched[row, -n:], expected, atol=1e-5)
    assert values.shape == (2, 3)


def _episodes(good, bad, reps=4):
    prompt = [1, 30, 31, 32]
    episodes = []
    for _ in range(reps):
        episodes.append(Episode([Turn(prompt, good, "good", None, 1, reward=1.0, env_reward=1.0)]))
        episodes.append(Episode([Turn(prompt, bad, "bad", None, 0, reward=-1.0, env_reward=-1.0)]))
    return episodes


def _logprob(policy, tokens):
    with torch.no_grad():
        sample = Sample([1, 30, 31, 32], tokens, 0.0, 0)
        batch = make_batch([sample], 0, torch.device("cpu"))
        logits, _ = policy.response_logits_and_values(batch.input_ids, batch.attention_mask, batch.k)
        return torch.log_softmax(logits, -1).gather(-1, batch.targets[..., None]).sum().item()


def test_ppo_moves_probability_towards_rewarded_responses(tiny):
    policy, tokenizer = _lora_policy(tiny)
    trainer = PPOTrainer(policy, PPOConfig(learning_rate=3e-3, mini_batch_size=4, ppo_epochs=4),
                         pad_token_id=tokenizer.pad_token_id)
    good, bad = [40, 41], [50, 51]
    before = _logprob(policy, good) - _logprob(policy, bad)
    base_before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora" not in n}
    stats = trainer.step(_episodes(good, bad))
    after = _logprob(policy, good) - _logprob(policy, bad)
    assert after > before + 0.1
    assert stats["ppo/kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA B starts at zero: policy == reference
    for name, param in policy.named_parameters():
        if name in base_before and "v_head" not in name:
            assert torch.equal(param, base_before[name]), f"{name} is frozen and must not change"


def test_reference_is_the_model_with_adapters_disabled(tiny):
    policy, tokenizer = _lora_policy(tiny)
    trainer = PPOTrainer(policy, PPOConfig(learning_rate=1e-2, mini_batch_size=8, ppo_epochs=2),
                         pad_token_id=tokenizer.pad_token_id)
    assert trainer.ref_model is None  # no second copy of the weights
    episodes = _episodes([40, 41], [50, 51])
    trainer.step(episodes)
    stats = trainer.step(episodes)
    assert stats["ppo/kl"] != 0.0


def test_nonfinite_rewards_skip_the_update_and_then_stop(tiny):
    policy, tokenizer = _lora_policy(tiny)
    trainer = PPOTrainer(policy, PPOConfig(max_nonfinite_updates=2), pad_token_id=tokenizer.pad_token_id)
    episodes = _episodes([40], [50])
    episodes[0].turns[0].reward = math.nan
    before = [p.detach().clone() for p in policy.trainable_parameters()]
    stats = trainer.step(episodes)
    assert stats["ppo/skipped_update"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.trainable_parameters()))
    with pytest.raises(TrainingError, match="2 updates in a row"):
        trainer.step(episodes)


def test_advantages_are_float32_and_cross_turns(tiny):
    policy, tokenizer = _lora_policy(tiny)
    trainer = PPOTrainer(policy, PPOConfig(whiten_advantages=False, kl_coef=0.0, lam=1.0, gamma=1.0),
                         pad_token_id=tokenizer.pad_token_id)
    episode = Episode([Turn([1, 2], [3, 4], "", None, 0, reward=0.0), Turn([1, 2, 3, 4, 5], [6], "", None, 0,
                                                                            reward=2.0)])
    samples = [Sample(t.query_ids, t.response_ids, t.reward, 0) for t in episode.turns]
    trainer._score(samples)
    trainer._advantages(samples, 1)
    assert samples[0].advantages.dtype == torch.float32
    # value head starts at zero, lam = gamma = 1: every token's advantage is the episode's final reward
    assert torch.allclose(torch.cat([s.advantages for s in samples]), torch.tensor([2.0, 2.0, 2.0]))


def test_shared_prefix_changes_no_logprob_or_value(tiny):
    from trl.trainer.utils import selective_log_softmax

    policy, tokenizer = _lora_policy(tiny)
    policy.eval()
    torch.nn.init.normal_(policy.v_head.weight)  # a zero head would hide differences in the values
    head = list(range(60, 72))  # 12 tokens every sample shares (a system prompt)
    samples = [Sample(head + [5, 6, 7], [10, 11], 0.0, 0), Sample(head + [8], [12, 13, 14], 0.0, 0),
               Sample(head + [9, 9], [15], 0.0, 0)]
    out = {}
    for prefix_length in (0, 12):
        batch = make_batch(samples, 0, torch.device("cpu"), prefix_length)
        assert (batch.prefix_ids is not None) == bool(prefix_length)
        with torch.no_grad():
            logits, values = policy.response_logits_and_values(batch.input_ids, batch.attention_mask, batch.k,
                                                               batch.prefix_ids)
        out[prefix_length] = (selective_log_softmax(logits, batch.targets) * batch.mask, values * batch.mask)
    assert torch.allclose(out[0][0], out[12][0], atol=1e-5)
    assert torch.allclose(out[0][1], out[12][1], atol=1e-5)


def test_linear_schedule_anneals_the_learning_rate_to_zero_over_the_planned_updates(tiny):
    policy, tokenizer = _lora_policy(tiny)
    trainer = PPOTrainer(policy, PPOConfig(learning_rate=1e-3, lr_schedule="linear", mini_batch_size=8, ppo_epochs=1),
                         pad_token_id=tokenizer.pad_token_id)
    episodes = _episodes([40], [50])
    with pytest.raises(ConfigError, match="planned_updates"):
        trainer.step(episodes)
    trainer.planned_updates = 4
    rates = [trainer.step(episodes)["ppo/learning_rate"] for _ in range(5)]
    assert rates == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0])
    frozen = [p.detach().clone() for p in policy.trainable_parameters()]
    trainer.step(episodes)  # past the plan: the rate stays at zero and nothing moves
    assert all(torch.equal(a, b) for a, b in zip(frozen, policy.trainable_parameters()))


def test_constant_schedule_keeps_the_rate(tiny):
    policy, tokenizer = _lora_policy(tiny)
    trainer = PPOTrainer(policy, PPOConfig(learning_rate=1e-3, mini_batch_size=8, ppo_epochs=1),
                         pad_token_id=tokenizer.pad_token_id)
    assert [trainer.step(_episodes([40], [50]))["ppo/learning_rate"] for _ in range(2)] == [1e-3, 1e-3]


def test_adaptive_schedule_follows_the_kl_of_each_step(tiny):
    policy, tokenizer = _lora_policy(tiny)
    trainer = PPOTrainer(policy, PPOConfig(learning_rate=1e-3, lr_schedule="adaptive", lr_kl_target=0.01),
                         pad_token_id=tokenizer.pad_token_id)
    trainer._adapt_learning_rate(0.05)  # more than twice the target: 1.5 times smaller
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 1.5)
    trainer._adapt_learning_rate(0.01)  # within [target / 2, 2 target]: unchanged
    assert trainer.adapted_rate == pytest.approx(1e-3 / 1.5)
    trainer._adapt_learning_rate(0.001)  # below half: 1.5 times larger
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    for _ in range(100):
        trainer._adapt_learning_rate(0.0)
    assert trainer.adapted_rate == pytest.approx(1e-3)  # the ceiling: learning_rate itself
    for _ in range(100):
        trainer._adapt_learning_rate(1.0)
    assert trainer.adapted_rate == pytest.approx(1e-6)  # the floor: a thousandth of learning_rate
    trainer._adapt_learning_rate(float("nan"))
    assert trainer.adapted_rate == pytest.approx(1e-6)


def test_adaptive_schedule_slows_an_update_that_moves_the_policy_too_far(tiny):
    """A large step size on a batch with strong advantages: with a tiny KL target every step past the first
    moves the policy more than twice the target, so the rate falls below learning_rate and checkpoints keep it."""
    policy, tokenizer = _lora_policy(tiny)
    config = PPOConfig(learning_rate=1e-2, lr_schedule="adaptive", lr_kl_target=1e-6, mini_batch_size=1,
                       ppo_epochs=2)
    trainer = PPOTrainer(policy, config, pad_token_id=tokenizer.pad_token_id)
    stats = trainer.step(_episodes([40, 41, 42], [50, 51, 52]))
    assert stats["ppo/learning_rate"] < 1e-2 and stats["ppo/learning_rate"] == trainer.adapted_rate
    state = trainer.state_dict()
    resumed = PPOTrainer(_lora_policy(tiny)[0], config, pad_token_id=tokenizer.pad_token_id)
    resumed.restore(state)
    assert resumed.adapted_rate == trainer.adapted_rate
    lower = PPOTrainer(_lora_policy(tiny)[0], PPOConfig(learning_rate=1e-8, lr_schedule="adaptive"),
                       pad_token_id=tokenizer.pad_token_id)
    lower.restore(state)  # resumed with a smaller learning_rate: its range bounds the saved rate
    assert lower.adapted_rate == pytest.approx(1e-8)
    higher = PPOTrainer(_lora_policy(tiny)[0], PPOConfig(learning_rate=10.0, lr_schedule="adaptive"),
                        pad_token_id=tokenizer.pad_token_id)
    higher.restore(state)  # and a larger one: its floor, a thousandth of it, lifts the saved rate
    assert higher.adapted_rate == pytest.approx(1e-2)
    resumed._set_learning_rate()  # what the next update starts from: the adapted rate, not learning_rate
    assert resumed.optimizer.param_groups[0]["lr"] == trainer.adapted_rate


def _cut_and_ended(bootstrap_query):
    """One two-turn episode twice: ended by the game, and truncated with `bootstrap_query` as the next prompt."""
    head = list(range(60, 72))  # a shared system prompt, long enough for the shared-prefix pass
    turns = [Turn(head + [1, 2], [3, 4], "", None, 0, reward=0.5), Turn(head + [1, 2, 3, 4, 5], [6, 7], "", None, 0,
                                                                        reward=1.0)]
    return [Episode(list(turns)), Episode(list(turns), bootstrap_query=head + bootstrap_query)]


def test_a_truncated_episode_bootstraps_from_the_value_of_the_state_it_was_cut_at(tiny):
    from llamagym.algo.trainer import episode_samples

    policy, tokenizer = _lora_policy(tiny)
    torch.nn.init.normal_(policy.v_head.weight)  # a zero head would value every state at 0
    gamma, lam = 0.8, 0.9
    trainer = PPOTrainer(policy, PPOConfig(whiten_advantages=False, kl_coef=0.0, gamma=gamma, lam=lam),
                         pad_token_id=tokenizer.pad_token_id)
    ended, cut = _cut_and_ended([1, 2, 3, 4, 5, 6, 7, 8])
    samples = episode_samples([ended, cut])
    trainer.prefix_length = trainer._shared_prefix(samples)
    assert trainer.prefix_length == 13  # scored after a shared prefix, the bootstrap prompt too
    trainer._score(samples)
    trainer._advantages(samples, 2)
    with torch.no_grad():
        value = policy(torch.tensor([cut.bootstrap_query]))[2][0, -1].item()  # V(s_T): the prompt's last position
    assert value != 0.0 and samples[3].bootstrap_value == pytest.approx(value, abs=1e-5)
    assert samples[1].bootstrap_value == 0.0 and samples[0].bootstrap_query is None
    advantages = [torch.cat([s.advantages for s in samples if s.episode == e]) for e in (0, 1)]
    returns = [torch.cat([s.returns for s in samples if s.episode == e]) for e in (0, 1)]
    # tokens 3, 4 | 6, 7 with discounts 1, gamma, 1, gamma: gamma * V(s_T) reaches each token through the
    # discounts and lambdas after it
    expected = gamma * value * torch.tensor([lam ** 3 * gamma, lam ** 2 * gamma, lam, 1.0])
    assert torch.allclose(advantages[1] - advantages[0], expected, atol=1e-5)
    assert torch.allclose(returns[1] - returns[0], expected, atol=1e-5)


def test_estimators_without_a_value_head_ignore_the_bootstrap(tiny):
    from llamagym.algo.trainer import episode_samples

    policy, tokenizer = _lora_policy(tiny)
    torch.nn.init.normal_(policy.v_head.weight)
    trainer = PPOTrainer(policy, PPOConfig(advantage="reinforce", whiten_advantages=False, kl_coef=0.0, gamma=0.8),
                         pad_token_id=tokenizer.pad_token_id)
    samples = episode_samples(_cut_and_ended([1, 2, 3]))
    trainer._score(samples)
    trainer._advantages(samples, 2)
    assert samples[3].bootstrap_value == 0.0  # not even scored
    assert torch.equal(samples[1].advantages, samples[3].advantages)
