"""Constrained answers: the choice trie, sampling only among the choices, and PPO scoring the same restricted
distribution the answers were sampled from."""

import math

import gymnasium as gym
import pytest
import torch

from llamagym.agent.choices import ChoiceTrie, build_trie
from llamagym.config import GenerationConfig
from llamagym.errors import UsageError
from llamagym.policy.generation import sample_responses
from llamagym.agent.choices import restrict_logits
from llamagym.algo.trainer import Sample, make_batch
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead
from llamagym_blackjack.agent import BlackjackAgent

END = 0


def test_trie_allows_the_continuations_of_the_choices_and_the_end_token_where_a_shorter_one_ends():
    trie = ChoiceTrie([[5], [7, 8], [7]], END)
    assert sorted(trie.allowed([])) == [5, 7]
    assert trie.allowed([5]) == []  # complete, nothing may follow
    assert sorted(trie.allowed([7])) == [END, 8]  # " 7" may end here or go on to " 78"
    assert trie.allowed([7, END]) == [] and trie.allowed([7, 8]) == []
    assert trie.allowed_per_position([7, 8]) == [trie.allowed([]), trie.allowed([7])]
    with pytest.raises(ValueError, match="continues none of the choices"):
        trie.allowed_per_position([6])
    with pytest.raises(ValueError):
        trie.allowed_per_position([5, 8])


def test_an_empty_choice_is_refused():
    with pytest.raises(UsageError, match="empty"):
        ChoiceTrie([[1], []], END)


def test_sampling_only_ever_yields_a_choice(tiny):
    model, tokenizer = tiny
    trie = build_trie(tokenizer, [" stick", " hit", " hit me"], tokenizer.eos_token_id)
    choices = {tuple(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (" stick", " hit")}
    choices.add(tuple(tokenizer(" hit", add_special_tokens=False)["input_ids"]) + (tokenizer.eos_token_id,))
    choices.add(tuple(tokenizer(" hit me", add_special_tokens=False)["input_ids"]))
    prompts = [tokenizer(f"Your hand totals {n}.")["input_ids"] for n in range(4, 22)] * 4
    settings = GenerationConfig(max_new_tokens=8, do_sample=True)
    responses = sample_responses(AutoModelForCausalLMWithValueHead(model), prompts, settings,
                                 eos_token_ids={tokenizer.eos_token_id}, pad_token_id=tokenizer.pad_token_id,
                                 choices=[trie] * len(prompts), generator=torch.Generator().manual_seed(0))
    assert {tuple(r.token_ids) for r in responses} <= choices
    assert len({tuple(r.token_ids) for r in responses}) > 1  # it samples, it does not always pick one


def test_restricted_log_probs_renormalise_over_the_allowed_tokens():
    logits = torch.randn(2, 3, 11)
    allowed = [(0, 1, [2, 5]), (1, 2, [4])]
    restricted = torch.log_softmax(restrict_logits(logits, allowed), -1)
    expected = logits[0, 1, 2] - torch.logsumexp(logits[0, 1, [2, 5]], 0)
    assert math.isclose(float(restricted[0, 1, 2]), float(expected), rel_tol=1e-5)
    assert float(restricted[1, 2, 4]) == pytest.approx(0.0, abs=1e-6)  # a forced token costs nothing
    assert torch.equal(restricted[0, 0], torch.log_softmax(logits[0, 0], -1))  # other positions untouched


def test_make_batch_places_the_allowed_tokens_at_the_response_positions():
    samples = [Sample([1, 2, 3], [4, 5], 0.0, 0, [[4, 9], [5]]), Sample([1, 2], [6], 0.0, 1, None),
               Sample([1], [7], 0.0, 2, [[7, 8]])]
    batch = make_batch(samples, pad_token_id=0, device=torch.device("cpu"))
    assert batch.k == 2
    assert batch.allowed == [(0, 0, [4, 9]), (0, 1, [5]), (2, 1, [7, 8])]
    assert batch.targets[0].tolist() == [4, 5] and batch.targets[2, 1] == 7


def _agent(tiny, **generation):
    model, tokenizer = tiny
    agent = BlackjackAgent(model, tokenizer, "cpu", {"max_new_tokens": 6, **generation}, {"batch_size": 4},
                           seed=0, precision="fp32")
    agent.action_space = gym.make("Blackjack-v1").action_space
    return agent


def test_the_blackjack_agent_never_answers_invalidly_and_records_what_was_allowed(tiny):
    agent = _agent(tiny)
    observations = {slot: (4 + slot % 18, 1 + slot % 10, slot % 2) for slot in range(40)}
    agent.act_batch(observations)
    turns = [agent.end_episode(slot).turns[-1] for slot in observations]
    assert all(turn.valid for turn in turns)
    assert {turn.action for turn in turns} == {0, 1}
    assert all(turn.allowed is not None and len(turn.allowed) == len(turn.response_ids) for turn in turns)
    free = _agent(tiny, constrained=False)
    free.act_batch(observations)
    assert all(free.end_episode(slot).turns[-1].allowed is None for slot in observations)


def test_ppo_scores_the_distribution_the_answers_were_sampled_from(tiny):
    """The frequency of " hit" among constrained samples matches exp(log-prob) as the trainer scores it."""
    agent = _agent(tiny)
    observation = (14, 10, 0)
    n = 600
    agent.act_batch(dict.fromkeys(range(n), observation))
    turns = [agent.end_episode(slot).turns[-1] for slot in range(n)]
    hits = sum(turn.action == 1 for turn in turns)
    hit_turn = next(turn for turn in turns if turn.action == 1)
    sample = Sample(hit_turn.query_ids, hit_turn.response_ids, 0.0, 0, hit_turn.allowed)
    logprobs, _, entropy = agent.trainer._forward(agent.model, make_batch([sample], agent.tokenizer.pad_token_id,
                                                                          agent.device), with_entropy=True)
    p_hit = float(logprobs.sum().exp())
    assert abs(hits / n - p_hit) < 4 * math.sqrt(p_hit * (1 - p_hit) / n) + 1e-3
    assert float(entropy[0, 0]) <= math.log(2) + 1e-5  # two choices: at most one bit of entropy
