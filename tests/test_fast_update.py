"""The cheaper update paths of issue 16 give what the reference path gives: the sampler's own log-probs and values
match a scoring forward, an update that takes them (and cached reference log-probs) has the same losses and moves
the weights the same way, and LoRA on the top layers only trains those layers."""

import copy

import pytest
import torch

from llamagym.agent.choices import ChoiceTrie
from llamagym.agent.episode import Episode, Turn
from llamagym.algo.reference import ReferenceCache, sequence_key
from llamagym.algo.trainer import PPOTrainer, Sample, make_batch
from llamagym.config import GenerationConfig, LoraConfig, PPOConfig
from llamagym.policy.generation import sample_responses
from llamagym.policy.models import add_lora
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead


def _policy(tiny, layers=0):
    model, tokenizer = tiny
    policy = AutoModelForCausalLMWithValueHead(add_lora(copy.deepcopy(model), LoraConfig(r=4, alpha=8,
                                                                                         layers=layers)))
    torch.manual_seed(0)
    for name, param in policy.named_parameters():  # adapters and value head away from their zero start
        if "lora_B" in name or "v_head" in name:
            torch.nn.init.normal_(param, std=0.05)
    return policy.eval(), tokenizer


PROMPTS = [[1, 30, 31, 32, 33], [1, 30, 31, 40], [1, 30, 31, 32, 50, 51, 52]]


def _sampled(policy, settings, choices=None):
    generator = torch.Generator().manual_seed(3)
    return sample_responses(policy, PROMPTS, settings, eos_token_ids={2}, pad_token_id=0, generator=generator,
                            choices=choices)


def _rescored(policy, responses, temperature, allowed=None):
    samples = [Sample(p, r.token_ids, 0.0, 0, allowed[i] if allowed else None)
               for i, (p, r) in enumerate(zip(PROMPTS, responses))]
    trainer = PPOTrainer(policy, PPOConfig(sampler_logprobs=False), pad_token_id=0, temperature=temperature)
    trainer._score_chunks(samples, policy=True, reference=False)
    return samples


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_samplers_logprobs_and_values_are_the_scoring_forwards(tiny, temperature):
    policy, _ = _policy(tiny)
    settings = GenerationConfig(max_new_tokens=4, temperature=temperature)
    responses = _sampled(policy, settings)
    for response, sample in zip(responses, _rescored(policy, responses, temperature)):
        assert response.logprobs is not None and len(response.logprobs) == len(response.token_ids)
        assert torch.allclose(torch.tensor(response.logprobs), sample.old_logprobs, atol=1e-4)
        assert torch.allclose(torch.tensor(response.values), sample.values, atol=1e-4)


def test_constrained_sampling_records_the_restricted_distribution(tiny):
    policy, _ = _policy(tiny)
    trie = ChoiceTrie([[40, 41], [50]], end_token_id=2)
    responses = _sampled(policy, GenerationConfig(max_new_tokens=3), [trie] * len(PROMPTS))
    allowed = [trie.allowed_per_position(r.token_ids) for r in responses]
    for response, sample in zip(responses, _rescored(policy, responses, 1.0, allowed)):
        assert torch.allclose(torch.tensor(response.logprobs), sample.old_logprobs, atol=1e-4)
        assert max(response.logprobs) <= 0.0


@pytest.mark.parametrize("settings", [GenerationConfig(top_k=5), GenerationConfig(top_p=0.9),
                                      GenerationConfig(do_sample=False)])
def test_truncated_or_greedy_sampling_records_nothing_and_is_rescored(tiny, settings):
    policy, _ = _policy(tiny)
    assert all(r.logprobs is None and r.values is None for r in _sampled(policy, settings))


def _episodes(policy, settings):
    """Two-turn episodes whose turns carry the sampler's log-probs, as the agent records them."""
    episodes = []
    for reward, responses in zip((1.0, -1.0, 0.5), (_sampled(policy, settings) for _ in range(3))):
        turns = [Turn(p, r.token_ids, "", None, 0, reward=reward * (i - 1), env_reward=reward,
                      logprobs=r.logprobs, values=r.values) for i, (p, r) in enumerate(zip(PROMPTS, responses))]
        episodes.append(Episode(turns))
    return episodes


def _update(policy, episodes, **config):
    trainer = PPOTrainer(policy, PPOConfig(mini_batch_size=3, ppo_epochs=2, learning_rate=1e-3, **config),
                         pad_token_id=0)
    stats = trainer.step(copy.deepcopy(episodes))
    return stats, trainer


def test_an_update_on_the_samplers_logprobs_and_cached_references_is_the_reference_update(tiny):
    policy, _ = _policy(tiny)
    episodes = _episodes(policy, GenerationConfig(max_new_tokens=3))
    slow_policy, fast_policy = copy.deepcopy(policy), copy.deepcopy(policy)
    slow, _ = _update(slow_policy, episodes, sampler_logprobs=False, reference_cache=0)
    fast, trainer = _update(fast_policy, episodes)
    assert slow["ppo/rescored_fraction"] == 1.0 and fast["ppo/rescored_fraction"] == 0.0
    for key in ("ppo/loss/policy", "ppo/loss/value", "ppo/loss/total", "ppo/kl", "ppo/entropy", "ppo/returns_mean"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-4), key
    for (name, a), b in zip(slow_policy.named_parameters(), fast_policy.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name
    # a second update on the same sequences scores no reference again, and gives the uncached reference values
    again = trainer.step(copy.deepcopy(episodes))
    assert again["ppo/reference_scored_fraction"] == 0.0
    uncached, _ = _update(copy.deepcopy(fast_policy), episodes, reference_cache=0)
    assert trainer.reference_cache.hits >= sum(len(e.turns) for e in episodes)
    assert uncached["ppo/kl"] != pytest.approx(0.0)


def test_the_sampled_logprobs_are_ignored_when_turned_off_or_incomplete(tiny):
    policy, _ = _policy(tiny)
    episodes = _episodes(policy, GenerationConfig(max_new_tokens=3))
    episodes[0].turns[0].logprobs = None  # a recorded demonstration: no sampler log-probs
    episodes[1].turns[0].logprobs = episodes[1].turns[0].logprobs + [0.0]  # not one per response token
    stats, _ = _update(copy.deepcopy(policy), episodes)
    assert 0.0 < stats["ppo/rescored_fraction"] < 1.0


def test_reference_cache_keeps_the_most_recent_and_round_trips():
    cache = ReferenceCache(2)
    keys = [sequence_key([1, 2], [3], None), sequence_key([1, 2], [3], [[3, 4]]), sequence_key([1], [2, 3], None)]
    assert len(set(keys)) == 3  # the constraint is part of the key
    for i, key in enumerate(keys):
        cache.put(key, torch.tensor([float(i)]))
    assert cache.get(keys[0]) is None and cache.get(keys[2]).item() == 2.0
    restored = ReferenceCache(2)
    restored.load_state_dict(cache.state_dict())
    assert list(restored.entries) == list(cache.entries)
    assert ReferenceCache(0).put(keys[0], torch.tensor([0.0])) is None and not ReferenceCache(0).entries


def test_lora_on_the_top_layers_only_trains_those(tiny):
    policy, _ = _policy(tiny, layers=1)
    total = policy.config.num_hidden_layers
    adapted = {int(name.split("layers.")[1].split(".")[0]) for name, p in policy.named_parameters()
               if p.requires_grad and "lora" in name}
    assert adapted == {total - 1}
    everything = _policy(tiny, layers=total)[0]  # a preset's "last N" on a model of N layers or fewer: all
    assert {int(name.split("layers.")[1].split(".")[0]) for name, p in everything.named_parameters()
            if p.requires_grad and "lora" in name} == set(range(total))
