"""Generation backends: the default samples with the policy exactly as before; the vllm backend (driven here by a
fake `vllm` module, since vLLM needs a CUDA GPU) gets the prompt token ids, the sampling settings and, after
every PPO update, a fresh adapter directory and id holding the updated LoRA weights."""

import sys
import types
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import pytest
import torch
from click.testing import CliRunner

from llamagym import Agent, ConfigError, UsageError
from llamagym.policy.backends import TransformersBackend, VLLMBackend, finish_response
from llamagym.cli import cli
from llamagym.config import LoraConfig


class WordAgent(Agent):
    stop_strings = ("hit", "stick")

    def get_system_prompt(self): return "Answer hit or stick."
    def format_observation(self, observation): return f"total {observation}"
    def extract_action(self, response): return 1 if "hit" in response else 0


class FakeLLM:
    """Stands in for `vllm.LLM`: records what it is given, reads the adapter it is asked to apply, and answers
    with scripted token ids."""

    instances: list = []
    script: list = []  # the completions every engine answers with, row by row

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        FakeLLM.instances.append(self)

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        from safetensors.torch import load_file

        weights = load_file(str(Path(lora_request.lora_path) / "adapter_model.safetensors"))
        self.calls.append({"prompts": prompts, "params": params, "request": lora_request, "weights": weights})
        return [SimpleNamespace(outputs=[self.script[row % len(self.script)]]) for row in range(len(prompts))]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine the threads slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fake_vllm(monkeypatch):
    import trl.trainer.utils  # noqa: F401  (imported first: trl adapts itself to an installed vllm)

    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, int_id, path: SimpleNamespace(lora_name=name, lora_int_id=int_id,
                                                                     lora_path=path)
    for name, module in {"vllm": vllm, "vllm.lora": types.ModuleType("vllm.lora"),
                         "vllm.lora.request": request}.items():
        monkeypatch.setitem(sys.modules, name, module)
    FakeLLM.instances, FakeLLM.script = [], [SimpleNamespace(token_ids=[5], finish_reason="length",
                                                              stop_reason=None)]
    return FakeLLM


@pytest.fixture
def no_vllm(monkeypatch):
    import trl.trainer.utils  # noqa: F401

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError


def _completion(ids, finish="length", stop_reason=None):
    return SimpleNamespace(token_ids=ids, finish_reason=finish, stop_reason=stop_reason)


def _adapter_weights(agent):
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(agent.model.pretrained_model).items()}


def _same(first, second):
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _vllm_agent(tiny_model_dir, bare_pm, lora=True):
    from llamagym.policy.models import load_model

    policy, tokenizer = load_model(str(tiny_model_dir), LoraConfig(r=4, alpha=8, enabled=lora))
    generation = {"backend": "vllm", "max_new_tokens": 6, "temperature": 0.7, "top_p": 0.9}
    ppo = {"batch_size": 2, "mini_batch_size": 2, "learning_rate": 0.01}
    return WordAgent(policy, tokenizer, "cpu", generation, ppo, action_space=gym.spaces.Discrete(2),
                     plugin_manager=bare_pm, precision="fp32", seed=0)


def _play_and_train(agent):
    agent.act_batch({0: 12, 1: 15})
    agent.assign_reward(1.0, 0)
    agent.assign_reward(-1.0, 1)
    agent.terminate_episode(0)
    return agent.terminate_episode(1)


def test_vllm_backend_gets_prompts_settings_and_each_updated_adapter(fake_vllm, tiny_model_dir, bare_pm):
    agent = _vllm_agent(tiny_model_dir, bare_pm)
    tokenizer = agent.tokenizer
    hit = tokenizer("hit", add_special_tokens=False)["input_ids"]
    digits = tokenizer(" 12 13", add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    assert not fake_vllm.instances  # the engine is built on first use
    fake_vllm.script = [_completion(hit + digits), _completion(digits + [eos] + digits, "stop", None)]
    actions = agent.act_batch({0: 12, 1: 15})
    (llm,) = fake_vllm.instances
    assert llm.kwargs["model"] == str(tiny_model_dir) and llm.kwargs["enable_lora"] and llm.kwargs["max_lora_rank"] == 8
    first = llm.calls[0]
    turns = [agent.current_episode(slot).turns[-1] for slot in (0, 1)]
    assert [p["prompt_token_ids"] for p in first["prompts"]] == [t.query_ids for t in turns]
    params = first["params"]
    assert (params.temperature, params.top_p, params.max_tokens) == (0.7, 0.9, 6)
    assert params.stop_token_ids == sorted(agent.eos_token_ids) and not hasattr(params, "top_k")
    assert turns[0].response_ids == hit and actions[0] == 1  # cut once the response names an action
    assert turns[1].response_ids == digits + [eos]  # cut after the end-of-turn token
    assert _same(first["weights"], _adapter_weights(agent))

    agent.assign_reward(1.0, 0)
    agent.assign_reward(-1.0, 1)
    agent.terminate_episode(0)
    assert agent.terminate_episode(1)  # a PPO update
    agent.act_batch({0: 12, 1: 15})
    second = llm.calls[1]
    assert second["request"].lora_int_id == first["request"].lora_int_id + 1
    assert second["request"].lora_path != first["request"].lora_path
    assert _same(second["weights"], _adapter_weights(agent)) and not _same(second["weights"], first["weights"])
    agent.act_batch({2: 17})  # no update in between: the same adapter
    assert llm.calls[2]["request"] is second["request"]

    for _ in range(2):
        agent.reset_conversations()
        assert _play_and_train(agent)
        agent.act_batch({0: 12})
    kept = [Path(p) for p in agent.generator.adapter_dirs]
    assert len(kept) == 2 and all(p.is_dir() for p in kept)
    assert not Path(first["request"].lora_path).exists() and len(fake_vllm.instances) == 1


def test_vllm_completions_are_cut_where_sampling_would_stop():
    eos = {2}
    never = lambda ids: False  # noqa: E731
    assert finish_response(_completion([5, 6, 2, 7]), eos, never).token_ids == [5, 6, 2]
    assert finish_response(_completion([5, 6, 2, 7]), eos, never).stop_reason == "eos"
    complete = finish_response(_completion([5, 6, 7, 8]), eos, lambda ids: ids[-1] == 6)
    assert (complete.token_ids, complete.stop_reason) == ([5, 6], "complete")
    assert finish_response(_completion([5, 6]), eos, never).stop_reason == "length"
    dropped = finish_response(_completion([5, 6], "stop", 2), eos, never)  # engine left the stop token out
    assert (dropped.token_ids, dropped.stop_reason) == ([5, 6, 2], "eos")


def test_the_default_backend_samples_as_before(tiny, bare_pm):
    from llamagym.policy.generation import sample_responses

    model, tokenizer = tiny
    agent = WordAgent(model, tokenizer, "cpu", {"max_new_tokens": 5}, plugin_manager=bare_pm, precision="fp32",
                      action_space=gym.spaces.Discrete(2))
    assert isinstance(agent.generator, TransformersBackend)
    torch.manual_seed(7)
    agent.act(12)
    turn = agent.current_episode().turns[-1]
    torch.manual_seed(7)
    (direct,) = sample_responses(agent.model, [turn.query_ids], agent.generation, eos_token_ids=agent.eos_token_ids,
                                 pad_token_id=tokenizer.pad_token_id, is_complete=agent._is_complete)
    assert turn.response_ids == direct.token_ids


def test_backend_selection_errors(tiny, bare_pm, no_vllm, tiny_model_dir, tmp_path):
    model, tokenizer = tiny
    with pytest.raises(UsageError, match=r"pip install 'llamagym\[vllm\]'"):
        WordAgent(model, tokenizer, "cpu", {"backend": "vllm"}, plugin_manager=bare_pm)
    with pytest.raises(ConfigError, match="generation.backend must be one of transformers, vllm"):
        WordAgent(model, tokenizer, "cpu", {"backend": "sglang"}, plugin_manager=bare_pm)
    result = CliRunner().invoke(cli, ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model",
                                      str(tiny_model_dir), "--generation-backend", "vllm", "-o", str(tmp_path / "o"),
                                      "-q"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "llamagym[vllm]" in result.output.strip().splitlines()[-1]


def test_vllm_backend_needs_lora(fake_vllm, tiny_model_dir, bare_pm):
    agent = _vllm_agent(tiny_model_dir, bare_pm, lora=False)
    assert isinstance(agent.generator, VLLMBackend)
    with pytest.raises(UsageError, match="enable LoRA"):
        agent.act(12)
