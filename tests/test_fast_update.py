"""The cheaper update paths of issue 16 give what the reference path gives: the sampler's own log-probs and values
match a scoring forward, an update that takes them (and cached reference log-probs) has the same losses and moves
the weights the same way, and LoRA on the top layers only trains those layers."""

import copy
import math
import random

import pytest
import torch

from llamagym.agent.choices import ChoiceTrie
from llamagym.agent.episode import Episode, Turn
from llamagym.algo.reference import ReferenceCache, sequence_key
from llamagym.algo.trainer import (PPOTrainer, Repeats, Sample, group_repeats, length_grouped_minibatches,
                                   make_batch)
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
    config = {"mini_batch_size": 3, "ppo_epochs": 2, "learning_rate": 1e-3, **config}
    trainer = PPOTrainer(policy, PPOConfig(**config), pad_token_id=0)
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


def test_merged_repeats_give_the_per_sample_update(tiny):
    policy, _ = _policy(tiny)
    episodes = _episodes(policy, GenerationConfig(max_new_tokens=3))  # each prompt's answer repeats in 3 episodes
    samples = sum(len(e.turns) for e in episodes)
    full = {"mini_batch_size": samples, "ppo_epochs": 1}  # one minibatch: both paths see the same samples
    per_sample_policy, merged_policy = copy.deepcopy(policy), copy.deepcopy(policy)
    per_sample, _ = _update(per_sample_policy, episodes, **full)
    merged, _ = _update(merged_policy, episodes, merge_repeats=True, **full)
    assert merged["ppo/forward_rows"] == len(PROMPTS) < samples
    for key in ("ppo/loss/policy", "ppo/loss/value", "ppo/loss/total", "ppo/entropy", "ppo/clipfrac",
                "ppo/approx_kl", "ppo/grad_norm"):
        assert merged[key] == pytest.approx(per_sample[key], abs=1e-5), key
    moved = False
    for (name, a), b, before in zip(per_sample_policy.named_parameters(), merged_policy.parameters(),
                                    policy.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
        moved |= not torch.equal(a, before)
    assert moved


def test_merging_without_repeats_is_bit_identical(tiny):
    policy, _ = _policy(tiny)
    episodes = _episodes(policy, GenerationConfig(max_new_tokens=3))[:1]  # three distinct prompts
    plain_policy, merged_policy = copy.deepcopy(policy), copy.deepcopy(policy)
    plain, _ = _update(plain_policy, episodes, mini_batch_size=2)
    merged, _ = _update(merged_policy, episodes, mini_batch_size=2, merge_repeats=True)
    assert merged.pop("ppo/forward_rows") == len(PROMPTS)
    plain.pop("time/ppo_s"), merged.pop("time/ppo_s")
    assert merged == plain
    for a, b in zip(plain_policy.parameters(), merged_policy.parameters()):
        assert torch.equal(a, b)


def test_repeats_are_grouped_by_prompt_answer_and_constraint():
    samples = [Sample([1, 2], [3], 0.0, 0), Sample([1, 2], [3], 1.0, 1), Sample([1, 2], [3], 0.5, 2, [[3, 4]]),
               Sample([1], [2, 3], 0.0, 3)]
    groups = group_repeats(samples)
    assert [[s.episode for s in g.samples] for g in groups] == [[0, 1], [2], [3]]
    assert [g.count for g in group_repeats(samples, merge=False)] == [1, 1, 1, 1]


@pytest.mark.parametrize("counts", [[1] * 13, [3, 1, 5, 1, 1, 2, 8, 1], [20]])
def test_minibatches_of_repeats_count_samples(counts):
    groups = [Repeats([Sample([1] * (i + 1), [2], 0.0, i)] * n) for i, n in enumerate(counts)]
    batches = length_grouped_minibatches(groups, 4, random.Random(0), group_factor=2, count=lambda g: g.count)
    assert sorted(id(g) for b in batches for g in b) == sorted(id(g) for g in groups)  # each group once
    short = [b for b in batches if sum(g.count for g in b) < 4]
    assert len(short) <= math.ceil(len(groups) / 8)  # only a group's last slice may fall short of the size
    for batch in batches:  # a slice closes as soon as it is full: without its last group it was short
        assert sum(g.count for g in batch[:-1]) < 4
