"""The batched sampler: greedy output equals transformers' generate, padding changes nothing, early stops."""

import pytest
import torch

from llamagym.config import GenerationConfig
from llamagym.policy.generation import choose_tokens, sample_responses, shared_prefix_length
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead


def _prompts(tokenizer):
    texts = ["Your current total is 15", "hit", "The dealer shows 10. Stick or hit? I stick"]
    return [tokenizer(t)["input_ids"] for t in texts]


def test_greedy_matches_transformers_generate(tiny):
    model, tokenizer = tiny
    settings = GenerationConfig(max_new_tokens=6, do_sample=False)
    prompts = _prompts(tokenizer)
    responses = sample_responses(AutoModelForCausalLMWithValueHead(model), prompts, settings, eos_token_ids=set(), pad_token_id=tokenizer.pad_token_id)
    for prompt, response in zip(prompts, responses):
        out = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
        assert response.token_ids == out[0, len(prompt):].tolist()
        assert response.stop_reason == "length"


@pytest.mark.parametrize("shared", [0, 12])
def test_batch_equals_one_by_one(tiny, shared):
    """Left padding and a shared prefix computed once change nothing (float32)."""
    model, tokenizer = tiny
    policy = AutoModelForCausalLMWithValueHead(model)
    settings = GenerationConfig(max_new_tokens=5, do_sample=False)
    head = list(range(40, 40 + shared))
    prompts = [head + p for p in _prompts(tokenizer)]
    assert shared_prefix_length(prompts) == shared
    batched = sample_responses(policy, prompts, settings, eos_token_ids=set(), pad_token_id=0)
    single = [sample_responses(policy, [p], settings, eos_token_ids=set(), pad_token_id=0)[0] for p in prompts]
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]


def test_shared_prefix_length_leaves_a_token_per_row():
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1], [2]]) == 0


def test_rows_stop_at_eos_or_when_complete(tiny):
    model, tokenizer = tiny
    model = AutoModelForCausalLMWithValueHead(model)
    settings = GenerationConfig(max_new_tokens=8, do_sample=False)
    prompts = _prompts(tokenizer)
    free = sample_responses(model, prompts, settings, eos_token_ids=set(), pad_token_id=0)
    eos = free[0].token_ids[2]  # pretend the third token of row 0 ends the turn
    stopped = sample_responses(model, prompts, settings, eos_token_ids={eos}, pad_token_id=0,
                               is_complete=lambda row, ids: row == 1 and len(ids) == 2)
    first_eos = free[0].token_ids.index(eos)
    assert stopped[0].token_ids == free[0].token_ids[:first_eos + 1] and stopped[0].stop_reason == "eos"
    assert stopped[1].token_ids == free[1].token_ids[:2] and stopped[1].stop_reason == "complete"
    assert len(stopped[2].token_ids) in (8, stopped[2].token_ids.index(eos) + 1 if eos in free[2].token_ids else 8)


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0]])
    gen = torch.Generator().manual_seed(0)
    picks = {int(choose_tokens(logits, GenerationConfig(top_k=2), gen)) for _ in range(200)}
    assert picks <= {0, 1} and len(picks) == 2
    # probabilities ~ [0.72, 0.26, 0.005, 0.002]: top_p 0.5 keeps only the first token
    picks = {int(choose_tokens(logits, GenerationConfig(top_p=0.5), gen)) for _ in range(100)}
    assert picks == {0}
    assert int(choose_tokens(logits, GenerationConfig(do_sample=False))) == 0
