"""The CUDA paths, on a machine that has one (`pytest -m gpu`, run by benchmarks/gpu_check.sh); skipped elsewhere.
Each compares against the CPU, so a wrong kernel or a lost device placement fails."""

import copy

import pytest
import torch

from llamagym.algo.trainer import PPOTrainer
from llamagym.config import GenerationConfig, LoraConfig, PPOConfig
from llamagym.agent.episode import Episode, Turn
from llamagym.policy.generation import sample_responses
from llamagym.policy.models import add_lora
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

PROMPTS = [[1, 30, 31, 32, 33], [1, 30, 31, 40]]


def _policy(tiny, device):
    model, _ = tiny
    policy = AutoModelForCausalLMWithValueHead(add_lora(copy.deepcopy(model), LoraConfig(r=4, alpha=8)))
    torch.manual_seed(0)
    for name, param in policy.named_parameters():
        if "lora_B" in name or "v_head" in name:
            torch.nn.init.normal_(param, std=0.05)
    return policy.to(device).eval()


def test_sampler_logprobs_on_cuda_match_the_cpu(tiny):
    cpu, gpu = _policy(tiny, "cpu"), _policy(tiny, "cuda")
    settings = GenerationConfig(max_new_tokens=3, do_sample=False)
    on_cpu = sample_responses(cpu, PROMPTS, settings, eos_token_ids={2}, pad_token_id=0)
    on_gpu = sample_responses(gpu, PROMPTS, settings, eos_token_ids={2}, pad_token_id=0)
    assert [r.token_ids for r in on_cpu] == [r.token_ids for r in on_gpu]


def test_a_ppo_update_on_cuda_gives_the_cpu_losses(tiny):
    episodes = [Episode([Turn(PROMPTS[i % 2], [40 + i, 41], "", None, 0, reward=float(i % 3) - 1,
                              env_reward=float(i % 3) - 1)]) for i in range(6)]
    stats = {}
    for device in ("cpu", "cuda"):
        trainer = PPOTrainer(_policy(tiny, device), PPOConfig(mini_batch_size=3, ppo_epochs=2), pad_token_id=0)
        stats[device] = trainer.step(copy.deepcopy(episodes))
    for key in ("ppo/loss/policy", "ppo/loss/value", "ppo/entropy"):
        assert stats["cuda"][key] == pytest.approx(stats["cpu"][key], abs=1e-3), key


def test_a_run_on_cuda_trains_and_saves(tiny_model_dir, tmp_path):
    from llamagym.config import build, RunConfig
    from llamagym.run.training import train

    config = build(RunConfig, {"agent": "blackjack", "env": "Blackjack-v1", "model": str(tiny_model_dir),
                               "episodes": 8, "device": "cuda", "num_envs": 4,
                               "ppo": {"batch_size": 4, "mini_batch_size": 2}})
    summary = train(config, tmp_path / "run", show_progress=False)
    assert summary["updates"] == 2 and (tmp_path / "run" / "adapter").is_dir()
