"""Rollout and PPO throughput on Blackjack-v1, in one process on one model, with the raw forward-pass ceiling of
this machine for scale:

- rollouts: the sequential seed-style loop against the batched engine;
- one PPO update on the same episodes, down a ladder of levers from the old preset's path to today's (the
  sampler's log-probs instead of a scoring pass, cached reference log-probs, LoRA on the last layers only, fewer
  epochs, the frozen trunk run once per sequence), each row adding one;
- training episodes per minute, rollouts and updates together, of the old preset and of today's (`llamagym run`'s
  own loop, two updates each).

    python benchmarks/throughput.py                      # embedded default model, 64 episodes per loop
    python benchmarks/throughput.py --episodes 32 --model PATH --out results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

from common import machine, peak_rss_gib, print_table, timer, write_json
from llamagym import Agent
from llamagym.config import LoraConfig
from llamagym.policy.models import load_model
from llamagym.plugins.manager import build_plugin_manager
from llamagym.policy.precision import autocast_factory, resolve_precision
from llamagym.rollout.gym import RolloutEngine, episode_seed
from llamagym.algo.reference import ReferenceCache
from llamagym.algo.trainer import episode_samples
from llamagym.algo.trunk_cache import TrunkCache
from llamagym.run.setup import resolve_config
from llamagym.run.training import train
from llamagym_blackjack.agent import BlackjackAgent


class SeedBlackjackAgent(Agent):
    """The seed's agent, exactly as LlamaGym users write it."""

    def get_system_prompt(self) -> str: return "You are an expert blackjack player."
    def format_observation(self, observation) -> str: return f"Your current total is {observation[0]}"
    def extract_action(self, response: str): return 0 if "stay" in response else 1


NO_TRAINING = {"batch_size": 10**9}
PRESET_ROW = "+ trunk states kept from an earlier batch (ppo.frozen_trunk)"
# the preset before issue 16: every sample scored again, the reference every update, LoRA on all 30 layers, 4 epochs
OLD_UPDATE = {"ppo_epochs": 4, "sampler_logprobs": False, "reference_cache": 0, "mini_batch_size": 16,
              "gradient_accumulation_steps": 2, "learning_rate": 2e-4}
OLD_PRESET = {"episodes": 1280, "lora": {"layers": 0}, "ppo": OLD_UPDATE}


def preset_settings() -> tuple[dict, dict]:
    """The generation and PPO settings `llamagym run --agent blackjack` uses (the agent's preset)."""
    config = resolve_config({"agent": "blackjack", "env": "Blackjack-v1"})
    ppo = {**dataclasses.asdict(config.ppo), "lr_schedule": "constant"}  # speed is the same; no run length here
    return dataclasses.asdict(config.generation), ppo


def sequential_loop(agent: Agent, episodes: int, seed: int) -> dict[str, float]:
    """The seed's loop: one env, one `act` per step."""
    env = gym.make("Blackjack-v1")
    agent.action_space = env.action_space
    steps = 0
    tokens_before, prompt_tokens = agent.counters["generated_tokens"], 0
    with timer() as t:
        for index in range(episodes):
            observation, _ = env.reset(seed=episode_seed(seed, index, evaluation=True))
            done = False
            while not done:
                action = agent.act(observation)
                prompt_tokens += len(agent.current_episode().turns[-1].query_ids)
                observation, reward, terminated, truncated, _ = env.step(action)
                agent.assign_reward(reward)
                done = terminated or truncated
                steps += 1
            agent.end_episode()
    return _rates(steps, agent.counters["generated_tokens"] - tokens_before, prompt_tokens, t["s"])


def engine_loop(agent: Agent, episodes: int, seed: int, num_envs: int) -> tuple[dict[str, float], list]:
    """The batched engine: `num_envs` copies, one generation per step for all of them."""
    engine = RolloutEngine(agent, lambda: gym.make("Blackjack-v1"), num_envs, seed)
    tokens_before = agent.counters["generated_tokens"]
    kept: list = []
    original_end = agent.end_episode

    def keep_episode(slot=0):
        episode = original_end(slot)
        if episode is not None:
            kept.append(episode)
        return episode

    agent.end_episode = keep_episode
    with timer() as t:
        results = engine.run(episodes, learn=False)
    agent.end_episode = original_end
    steps = sum(r.turns for r in results)
    prompt_tokens = sum(len(turn.query_ids) for e in kept for turn in e.turns)
    return _rates(steps, agent.counters["generated_tokens"] - tokens_before, prompt_tokens, t["s"]), kept


def _rates(steps: int, generated: int, prompt_tokens: int, seconds: float) -> dict[str, float]:
    return {"env_steps": steps, "seconds": seconds, "env_steps_per_s": steps / seconds,
            "generated_tokens_per_s": generated / seconds, "tokens_per_step": generated / max(steps, 1),
            "processed_tokens_per_s": (generated + prompt_tokens) / seconds}


def ceiling(model, device, precision: str, batch: int = 16, length: int = 64) -> float:
    """Tokens per second of one batched forward pass (prefill) of the model: this machine's compute ceiling."""
    autocast = autocast_factory(device, resolve_precision(precision, device))
    ids = torch.randint(100, 1000, (batch, length), device=device)
    mask = torch.ones_like(ids)
    with torch.no_grad(), autocast():
        model.hidden_states(ids, mask)
        with timer() as t:
            for _ in range(3):
                model.hidden_states(ids, mask)
    return batch * length * 3 / t["s"]


def ppo_rate(agent: Agent, episodes: list, warm: list | None = None, **overrides) -> dict[str, float]:
    """PPO samples per second of one update on `episodes` (weights restored afterwards), with a reference cache
    and a frozen-trunk cache of the configured sizes, filled from `warm` (an earlier batch) first when given."""
    trainer = agent.trainer
    saved_config, saved_autocast, saved_cache = trainer.config, trainer.autocast, trainer.reference_cache
    saved_trunk = trainer.trunk_cache
    state = {k: v.detach().clone() for k, v in agent.model.named_parameters() if v.requires_grad}
    optimizer_state = trainer.optimizer.state_dict()
    precision = overrides.pop("precision", None)
    if precision:
        trainer.autocast = autocast_factory(agent.device, resolve_precision(precision, agent.device))
    trainer.config = dataclasses.replace(saved_config, **overrides)
    trainer.reference_cache = ReferenceCache(trainer.config.reference_cache)
    trainer.trunk_cache, trainer._trunk_layers = TrunkCache(trainer.config.trunk_cache_mb), None
    if warm:
        samples = episode_samples(warm)
        trainer.prefix_length = trainer._shared_prefix(samples)
        trainer._trunk(samples)
        trainer._score(samples)
    try:
        with timer() as t:
            stats = trainer.step(episodes)
    finally:
        trainer.config, trainer.autocast, trainer.reference_cache = saved_config, saved_autocast, saved_cache
        trainer.trunk_cache, trainer._trunk_layers = saved_trunk, None
        with torch.no_grad():
            for name, param in agent.model.named_parameters():
                if name in state:
                    param.copy_(state[name])
        trainer.optimizer.load_state_dict(optimizer_state)
    return {"samples": stats["ppo/samples"], "seconds": t["s"], "ppo_samples_per_s": stats["ppo/samples"] / t["s"],
            "shared_prefix_tokens": stats["ppo/shared_prefix_tokens"],
            "rescored": stats["ppo/rescored_fraction"], "reference_scored": stats["ppo/reference_scored_fraction"],
            "trunk_computed": stats.get("ppo/trunk_computed_fraction"), "forward_rows": stats.get("ppo/forward_rows")}


def update_ladder(old: Agent, new: Agent, episodes: list, warm: list, skip_ablations: bool) -> list[dict]:
    """One update on the same episodes, each row adding one lever to the one above; `old` has LoRA on every
    layer, `new` the preset's last layers only."""
    layers = resolve_config({"agent": "blackjack", "env": "Blackjack-v1"}).lora.layers
    epochs = new.ppo_config.ppo_epochs
    old_minibatches = {k: OLD_UPDATE[k] for k in ("mini_batch_size", "gradient_accumulation_steps")}
    untrunked = {"frozen_trunk": False}
    ladder: list[tuple[str, Agent, dict, list | None]] = [
        ("old preset: rescoring, reference every update, LoRA on every layer, 4 epochs", old, dict(OLD_UPDATE), None),
        ("+ the sampler's log-probs and values", old, {**OLD_UPDATE, "sampler_logprobs": True}, None),
        ("+ cached reference log-probs (one earlier batch)", old,
         {**old_minibatches, "ppo_epochs": 4}, warm),
        (f"+ LoRA on the last {layers} layers", new, {**old_minibatches, "ppo_epochs": 4, **untrunked}, warm),
        (f"+ {epochs} epochs", new, {**old_minibatches, **untrunked}, warm),
        ("+ minibatches of 8, 4 accumulated (a quarter of the activation memory)", new, dict(untrunked), warm),
        ("+ the frozen trunk, computed in this update", new, {"frozen_trunk": True, "trunk_cache_mb": 0}, warm),
        (PRESET_ROW, new, {"frozen_trunk": True}, warm),
    ]
    for agent in (old, new):  # first-call costs (kernel selection, allocations) out of the first row
        ppo_rate(agent, episodes[:16])
    if not skip_ablations:
        ladder += [("  the preset, 1 epoch", new, {"ppo_epochs": 1}, warm),
                   ("  the preset without the shared prefix", new, {"prefix": False}, warm)]
    rows = []
    for name, agent, overrides, warm_batch in ladder:
        if overrides.pop("prefix", True):
            row = ppo_rate(agent, episodes, warm_batch, **overrides)
        else:
            row = _without_prefix(agent, episodes, warm_batch)
        rows.append({"ppo": name, **row})
        print(f"  {name}: {row['seconds']:.1f}s", flush=True)
    return rows


def repeat_rows(new: Agent, episodes: list, warm: list, large: list | None) -> list[dict]:
    """The preset's update with and without `ppo.merge_repeats` on the same episodes, and, given `large` (a
    bigger batch), merged on it: the repeats a batch holds grow with its size."""
    ppo_rate(new, episodes[:16])  # first-call costs out of the first row
    plan = [("the preset", episodes, {}), ("the preset, repeats merged", episodes, {"merge_repeats": True})]
    if large:
        plan.append((f"the preset, repeats merged, {len(large)} episodes", large, {"merge_repeats": True}))
    rows = []
    for name, batch, overrides in plan:
        row = ppo_rate(new, batch, warm, **overrides)
        rows.append({"ppo": name, **row})
        print(f"  {name}: {row['seconds']:.1f}s, {row['forward_rows'] or row['samples']} rows", flush=True)
    return rows


def training_rate(name: str, overrides: dict, episodes: int, seed: int, model: str) -> dict[str, float]:
    """Episodes per minute of `llamagym run`'s loop (rollouts, updates, logging, no exact scoring), model loading
    not counted."""
    flags = {"agent": "blackjack", "env": "Blackjack-v1", "model": model, "seed": seed, "score_policy": False,
             **overrides, "episodes": episodes, "checkpoint_every": 0}
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(resolve_config(flags), Path(tmp) / "run", show_progress=False)
    row = {"training": name, "episodes": summary["episodes"], "updates": summary["updates"],
           "seconds": summary["wall_time_s"], "episodes_per_min": 60 * summary["episodes"] / summary["wall_time_s"]}
    print(f"  {name}: {row['episodes_per_min']:.0f} episodes/min", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--episodes", type=int, default=64, help="episodes per batched rollout loop")
    parser.add_argument("--seed-episodes", type=int, default=16,
                        help="episodes of the sequential seed-style loop (slow: ~4 s per episode)")
    parser.add_argument("--update-episodes", type=int, default=128, help="episodes in the timed PPO update (the "
                        "preset's batch)")
    parser.add_argument("--training-episodes", type=int, default=256,
                        help="episodes of each training-rate row (two of the preset's batches)")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--skip-ablations", action="store_true", help="only the default PPO configuration")
    parser.add_argument("--repeats-only", action="store_true",
                        help="only the rows of ppo.merge_repeats: the preset's update with and without it")
    parser.add_argument("--large-update-episodes", type=int, default=512,
                        help="episodes of the merged large-batch row (0: none)")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/throughput.json]")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    policy, tokenizer = load_model(args.model, resolve_config({"agent": "blackjack", "env": "Blackjack-v1"}).lora)
    pm = build_plugin_manager(load_entry_points=False)
    common = {"plugin_manager": pm, "precision": args.precision, "seed": args.seed}
    seed_agent = SeedBlackjackAgent(policy, tokenizer, args.device, None, NO_TRAINING, **common)
    device = seed_agent.device
    print(f"model {args.model} on {device}, precision {args.precision}, {torch.get_num_threads()} threads")
    if args.repeats_only:
        return repeats_only(policy, tokenizer, args, common)
    raw = ceiling(policy, device, args.precision)
    rows = []
    seq_seed = sequential_loop(seed_agent, args.seed_episodes, args.seed)
    rows.append({"loop": "sequential, seed-style agent (32 new tokens, full history)", **seq_seed})
    generation, ppo = preset_settings()
    same = BlackjackAgent(policy, tokenizer, args.device, generation, ppo, **common)
    seq_same = sequential_loop(same, args.episodes, args.seed)
    rows.append({"loop": "sequential, engine's agent and settings", **seq_same})
    batched, episodes = engine_loop(same, args.episodes, args.seed, args.num_envs)
    rows.append({"loop": f"batched engine, {args.num_envs} envs", **batched})
    for row in rows:
        row["share_of_ceiling"] = row["processed_tokens_per_s"] / raw
    columns = ["loop", "env_steps", "seconds", "env_steps_per_s", "generated_tokens_per_s", "tokens_per_step",
               "share_of_ceiling"]
    print_table(rows, columns)
    ratio_seed = batched["env_steps_per_s"] / seq_seed["env_steps_per_s"]
    ratio_same = batched["env_steps_per_s"] / seq_same["env_steps_per_s"]
    print(f"\nraw ceiling (one batched forward, 16x64 tokens): {raw:.0f} tokens/s")
    print(f"batched / sequential seed-style: {ratio_seed:.1f}x   batched / sequential same settings: {ratio_same:.1f}x")

    print("\none PPO update on the same episodes:", flush=True)
    old_policy, _ = load_model(args.model, LoraConfig())
    old = BlackjackAgent(old_policy, tokenizer, args.device, generation, ppo, **common)
    warm = engine_loop(same, args.update_episodes, args.seed + 1, args.num_envs)[1]
    batch = engine_loop(same, args.update_episodes, args.seed, args.num_envs)[1]
    ppo_rows = update_ladder(old, same, batch, warm, args.skip_ablations)
    del old, old_policy
    print()
    print_table(ppo_rows, ["ppo", "samples", "seconds", "ppo_samples_per_s", "rescored", "reference_scored",
                           "trunk_computed"])
    preset = next(row for row in ppo_rows if row["ppo"] == PRESET_ROW)
    untrunked = next(row for row in ppo_rows if row["ppo"].startswith("+ minibatches of 8"))
    print(f"old preset / the preset, one update: {ppo_rows[0]['seconds'] / untrunked['seconds']:.1f}x; without the "
          f"frozen trunk / with it: {untrunked['seconds'] / preset['seconds']:.2f}x")

    print("\ntraining, rollouts and updates together (llamagym run's loop):", flush=True)
    training_rows = [training_rate("the preset", {}, args.training_episodes, args.seed, args.model),
                     training_rate("the preset with the frozen trunk", {"ppo": {"frozen_trunk": True}},
                                   args.training_episodes, args.seed, args.model)]
    if not args.skip_ablations:
        training_rows.insert(0, training_rate("old preset (before issue 16)", OLD_PRESET, args.training_episodes,
                                              args.seed, args.model))
    print()
    print_table(training_rows, ["training", "episodes", "updates", "seconds", "episodes_per_min"])
    rss = peak_rss_gib()
    print(f"\npeak resident memory of this process (two models, every row): {rss:.2f} GiB; `llamagym run`'s own "
          f"is measured with /usr/bin/time -v (docs/guides/blackjack.md)")
    out = write_json("throughput", {"machine": machine(), "args": vars(args), "raw_ceiling_tokens_per_s": raw,
                                    "rollout": rows, "ppo": ppo_rows, "training": training_rows,
                                    "ratio_batched_over_seed_style": ratio_seed,
                                    "ratio_batched_over_sequential_same_settings": ratio_same,
                                    "peak_rss_gib_benchmark": rss, "time": time.strftime("%Y-%m-%d %H:%M:%S")},
                     args.out)
    print(f"wrote {out}")


def repeats_only(policy, tokenizer, args: argparse.Namespace, common: dict) -> None:
    generation, ppo = preset_settings()
    agent = BlackjackAgent(policy, tokenizer, args.device, generation, ppo, **common)
    warm = engine_loop(agent, args.update_episodes, args.seed + 1, args.num_envs)[1]
    batch = engine_loop(agent, args.update_episodes, args.seed, args.num_envs)[1]
    large = (engine_loop(agent, args.large_update_episodes, args.seed + 2, args.num_envs)[1]
             if args.large_update_episodes else None)
    print("\none PPO update, repeated sequences merged or not:", flush=True)
    rows = repeat_rows(agent, batch, warm, large)
    print()
    print_table(rows, ["ppo", "samples", "forward_rows", "seconds", "ppo_samples_per_s"])
    print(f"per-sample / merged, one update of {len(batch)} episodes: {rows[0]['seconds'] / rows[1]['seconds']:.2f}x")
    out = write_json("throughput-repeats", {"machine": machine(), "args": vars(args), "ppo": rows,
                                            "time": time.strftime("%Y-%m-%d %H:%M:%S")}, args.out)
    print(f"wrote {out}")


def _without_prefix(agent: Agent, episodes: list, warm: list | None) -> dict[str, float]:
    trainer = agent.trainer
    original = trainer._shared_prefix
    trainer._shared_prefix = lambda samples: 0
    try:
        return ppo_rate(agent, episodes, warm)
    finally:
        trainer._shared_prefix = original


if __name__ == "__main__":
    main()
