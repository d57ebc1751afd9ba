"""Rollout throughput of each generation backend on Blackjack-v1, same model and settings: the transformers sampler
(the default; any device) and vLLM (a CUDA GPU; `pip install 'llamagym[vllm]'`). A PPO update runs between two
timed rollouts, so the second one includes handing the updated adapter to the backend.

    python benchmarks/generation_backends.py                                   # default model, both backends
    python benchmarks/generation_backends.py --backends transformers --episodes 16 --model PATH
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch

from common import machine, peak_rss_gib, print_table, timer, write_json
from llamagym.config import LoraConfig
from llamagym.policy.models import load_model
from llamagym.plugins.manager import build_plugin_manager
from llamagym.rollout.gym import RolloutEngine
from llamagym.testing.engines import play_and_store
from llamagym_blackjack.agent import BlackjackAgent

GENERATION = {"max_new_tokens": 6, "max_history_turns": 1}


def rollout(engine: RolloutEngine, agent: BlackjackAgent, episodes: int, start: int) -> dict[str, float]:
    """Play `episodes` training episodes (stored, not trained on); env steps and generated tokens per second."""
    tokens = agent.counters["generated_tokens"]
    with timer() as t:
        results = play_and_store(engine, episodes, start_index=start)
    steps = sum(r.turns for r in results)
    return {"env_steps": steps, "seconds": t["s"], "env_steps_per_s": steps / t["s"],
            "generated_tokens_per_s": (agent.counters["generated_tokens"] - tokens) / t["s"]}


def measure(backend: str, args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(args.seed)
    policy, tokenizer = load_model(args.model, LoraConfig())
    ppo = {"batch_size": 10**9, "mini_batch_size": 32, "ppo_epochs": 1}  # the loop below decides when to train
    agent = BlackjackAgent(policy, tokenizer, args.device, {**GENERATION, "backend": backend}, ppo,
                           plugin_manager=build_plugin_manager(load_entry_points=False), precision=args.precision,
                           seed=args.seed)
    engine = RolloutEngine(agent, lambda: gym.make("Blackjack-v1"), args.num_envs, args.seed)
    with timer() as startup:
        play_and_store(engine, args.num_envs, start_index=10**6)  # warm-up: builds a vLLM engine, compiles kernels
    agent.buffer.clear()
    rows = [{"backend": backend, "phase": "rollout before update", **rollout(engine, agent, args.episodes, 0)}]
    with timer() as update:
        stats = agent.train()
    rows.append({"backend": backend, "phase": "rollout after update",
                 **rollout(engine, agent, args.episodes, args.episodes)})
    for row in rows:
        row.update(startup_s=startup["s"], ppo_update_s=update["s"], ppo_samples=stats.get("ppo/samples", 0))
    engine.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--backends", nargs="+", default=["transformers", "vllm"], choices=["transformers", "vllm"])
    parser.add_argument("--episodes", type=int, default=128, help="episodes per timed rollout")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/generation_backends.json]")
    args = parser.parse_args()

    rows = [row for backend in args.backends for row in measure(backend, args)]
    print_table(rows, ["backend", "phase", "env_steps", "seconds", "env_steps_per_s", "generated_tokens_per_s",
                       "startup_s", "ppo_update_s"])
    out = write_json("generation_backends", {"machine": machine(), "args": vars(args), "rows": rows,
                                             "peak_rss_gib": peak_rss_gib(),
                                             "time": time.strftime("%Y-%m-%d %H:%M:%S")}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
