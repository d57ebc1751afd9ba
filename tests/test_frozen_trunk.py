"""The frozen trunk (`llamagym.policy.trunk`): with adapters on the last layers only, the layers below run once per
sequence and every pass runs the adapted ones from their states. The split forward is the full forward, an update
through it is the full update (with a shared prefix, rescoring and the reference pass), kept states give what
recomputed ones give, and a decoder the split would get wrong is not split."""

import copy

import pytest
import torch

import test_fast_update
from llamagym.algo.trunk_cache import TrunkCache
from llamagym.config import GenerationConfig
from llamagym.policy.trunk import first_adapted_layer, frozen_layers
from test_fast_update import _episodes, _update


def _policy(tiny, layers=1):
    """`test_fast_update`'s policy (adapters and value head moved off zero), adapted on the top layer only."""
    return test_fast_update._policy(tiny, layers=layers)[0]


def test_only_the_layers_below_the_adapters_are_frozen(tiny):
    assert first_adapted_layer(_policy(tiny, layers=1)) == frozen_layers(_policy(tiny, layers=1)) == 1
    assert frozen_layers(_policy(tiny, layers=0)) == 0  # every layer adapted: nothing to split off


@pytest.mark.parametrize("prefix", [None, [1, 30, 31, 32, 33, 34, 35, 36, 37]])
def test_the_split_forward_is_the_full_forward(tiny, prefix):
    policy = _policy(tiny)
    ids = torch.tensor([[0, 0, 40, 41, 42], [0, 43, 44, 45, 46], [47, 48, 49, 50, 51]])
    mask = (ids != 0).long()
    prefix_ids = torch.tensor([prefix]) if prefix else None
    if prefix:
        mask = torch.cat([torch.ones((3, len(prefix)), dtype=torch.long), mask], dim=1)
    with torch.no_grad():
        full = policy.response_logits_and_values(ids, mask, 3, prefix_ids)
        states = policy.trunk_states(ids, mask, 1, prefix_ids)
        split = policy.response_logits_and_values(ids, mask, 3, prefix_ids, trunk=(1, states))
    assert states.shape == (*ids.shape, policy.config.hidden_size)
    for a, b in zip(full, split):
        assert torch.allclose(a, b, atol=1e-5)
    with policy.reference(), torch.no_grad():  # adapters off above the trunk: the reference's forward
        assert torch.allclose(policy.response_logits_and_values(ids, mask, 3, prefix_ids)[0],
                              policy.response_logits_and_values(ids, mask, 3, prefix_ids, trunk=(1, states))[0],
                              atol=1e-5)


STATS = ("ppo/loss/policy", "ppo/loss/value", "ppo/loss/total", "ppo/kl", "ppo/entropy", "ppo/approx_kl",
         "ppo/grad_norm", "ppo/returns_mean")


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_an_update_through_the_frozen_trunk_is_the_full_update(tiny, monkeypatch, shared_prefix):
    if shared_prefix:  # every prompt starts with the same 9 tokens: the update computes them apart
        monkeypatch.setattr(test_fast_update, "PROMPTS", [[1, 30, 31, 32, 33, 34, 35, 36, 37] + p[1:]
                                                          for p in test_fast_update.PROMPTS])
    policy = _policy(tiny)
    episodes = _episodes(policy, GenerationConfig(max_new_tokens=3))
    settings = {"sampler_logprobs": False, "reference_cache": 0}  # every scoring pass runs, through the trunk
    full_policy, split_policy = copy.deepcopy(policy), copy.deepcopy(policy)
    full, full_trainer = _update(full_policy, episodes, frozen_trunk=False, **settings)
    split, trainer = _update(split_policy, episodes, frozen_trunk=True, **settings)
    assert "ppo/trunk_layers" not in full and full_trainer.trunk_layers == 0
    assert split["ppo/trunk_layers"] == 1 and split["ppo/trunk_computed_fraction"] == 1.0
    assert split["ppo/shared_prefix_tokens"] == full["ppo/shared_prefix_tokens"] == (11 if shared_prefix else 3)  # 3 < MIN_SHARED_PREFIX: not split off
    for key in STATS:
        assert split[key] == pytest.approx(full[key], abs=1e-5), key
    moved = False
    for (name, a), b, before in zip(full_policy.named_parameters(), split_policy.parameters(), policy.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
        moved |= not torch.equal(a, before)
    assert moved
    # the next update reads every sequence's states from the cache, and gives what recomputing them gives
    recomputed, _ = _update(copy.deepcopy(split_policy), episodes, frozen_trunk=True, trunk_cache_mb=0, **settings)
    again = trainer.step(copy.deepcopy(episodes))
    assert again["ppo/trunk_computed_fraction"] == 0.0 and recomputed["ppo/trunk_computed_fraction"] == 1.0
    for key in ("ppo/kl", "ppo/returns_mean", "ppo/values_mean"):  # scored through kept and recomputed states
        assert again[key] == pytest.approx(recomputed[key], abs=1e-6), key


def test_a_decoder_the_split_would_get_wrong_is_not_split(tiny, monkeypatch):
    """A decoder that changes `inputs_embeds` on the way in (as Gemma scales its embeddings) would see the trunk's
    states changed too: the probe catches it and the trainer runs the full forward."""
    policy = _policy(tiny)
    decoder = policy.decoder
    forward = decoder.forward

    def scaled(*args, inputs_embeds=None, **kwargs):
        return forward(*args, inputs_embeds=None if inputs_embeds is None else inputs_embeds * 2.0, **kwargs)

    monkeypatch.setattr(decoder, "forward", scaled)
    assert first_adapted_layer(policy) == 1 and frozen_layers(policy) == 0


def test_the_trunk_cache_keeps_states_within_its_budget_and_reads_past_a_longer_prefix():
    cache = TrunkCache(1)  # 1 MiB: 4 entries of 64 positions x 1024 floats
    states = {key: torch.full((64, 1024), float(key[0])) for key in (b"a", b"b", b"c", b"d", b"e")}
    for key, value in states.items():
        cache.put(key, 10, value)
    assert cache.get(b"a", 10) is None and cache.size <= 2**20  # the least recently used went first
    assert torch.equal(cache.get(b"b", 10), states[b"b"])
    assert torch.equal(cache.get(b"b", 14), states[b"b"][4:])  # a longer shared prefix: the rest of the states
    assert cache.get(b"b", 9) is None  # a shorter one needs positions the entry does not hold
    assert TrunkCache(0).capacity == 0 and (TrunkCache(0).put(b"x", 0, states[b"b"]) is None)
