"""Does the agent learn Blackjack? Train the default model on Blackjack-v1 for a fixed budget on the CPU and
compare the untrained and trained agent with the reference policies, all on the same seeded evaluation episodes.

    python benchmarks/blackjack_learning.py                     # the blackjack preset's budget
    python benchmarks/blackjack_learning.py --episodes 3000 --eval-episodes 4000 --set ppo.learning_rate=2e-4
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import gymnasium as gym

from common import machine, peak_rss_gib, print_table, timer, write_json
from llamagym.config import RunConfig, build, to_dict
from llamagym.evaluation import summarize
from llamagym.rollout import RolloutEngine, episode_seed
from llamagym.runner import build_agent, resolve_config, train
from llamagym_blackjack.strategy import REFERENCE_POLICIES


def play_reference(policy, episodes: int, seed: int) -> list[float]:
    """Returns of a scripted policy on the evaluation episodes' seeds."""
    env = gym.make("Blackjack-v1")
    returns = []
    for index in range(episodes):
        observation, _ = env.reset(seed=episode_seed(seed, index, evaluation=True))
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return returns


def play_agent(config: RunConfig, adapter: str | None, episodes: int, greedy: bool) -> tuple[list[float], dict]:
    """Returns of the LLM agent (untrained if `adapter` is None) on the evaluation episodes, in index order."""
    agent = build_agent(config, adapter=adapter)
    agent.generation.do_sample = not greedy
    engine = RolloutEngine(agent, lambda: gym.make("Blackjack-v1"), config.num_envs, config.seed)
    with timer() as t:
        results = engine.run(episodes, learn=False)
    results.sort(key=lambda r: r.index)
    turns = sum(r.turns for r in results)
    return [r.env_return for r in results], {"invalid_rate": sum(r.invalid_turns for r in results) / max(turns, 1),
                                            "seconds": t["s"]}


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and standard error of a - b over the same episodes (same seeds: a paired comparison)."""
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, math.sqrt(var / len(diffs))


def parse_overrides(pairs: list[str]) -> dict:
    """``section.key=value`` strings into a nested config dict (values parsed as TOML scalars)."""
    import tomllib

    out: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        parsed = tomllib.loads(f"v = {value}")["v"] if value else ""
        target = out
        *sections, name = key.split(".")
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = parsed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--episodes", type=int, help="training episodes [default: the preset's]")
    parser.add_argument("--eval-episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. ppo.learning_rate=2e-4 (repeatable)")
    parser.add_argument("--sample", action="store_true", help="evaluate with sampling instead of greedy decoding")
    parser.add_argument("--output", default="runs/benchmark-blackjack")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/blackjack_learning.json]")
    args = parser.parse_args()

    flags = {"agent": "blackjack", "env": "Blackjack-v1", "model": args.model, "seed": args.seed,
             **parse_overrides(args.overrides)}
    if args.episodes:
        flags["episodes"] = args.episodes
    config = resolve_config(flags)
    n, greedy = args.eval_episodes, not args.sample
    rows = []
    for name, make in REFERENCE_POLICIES.items():
        rows.append({"policy": name, **_stats(play_reference(make(), n, args.seed))})
    untrained, info_before = play_agent(config, None, n, greedy)
    rows.append({"policy": "LLM agent, untrained", **_stats(untrained), **info_before})
    with timer() as t:
        summary = train(config, Path(args.output), overwrite=True)
    trained, info_after = play_agent(config, summary["adapter"], n, greedy)
    rows.append({"policy": f"LLM agent, trained ({config.episodes} episodes)", **_stats(trained), **info_after})

    print(f"\nBlackjack-v1, {n} evaluation episodes (the same seeds for every row), "
          f"{'greedy' if greedy else 'sampled'} decoding; training took {t['s'] / 60:.1f} min")
    print_table(rows, ["policy", "mean_return", "stderr", "win_rate", "invalid_rate"])
    gain, gain_se = paired_difference(trained, untrained)
    basic = next(r for r in rows if r["policy"] == "basic strategy")
    to_basic, to_basic_se = paired_difference(trained, play_reference(REFERENCE_POLICIES["basic strategy"](), n,
                                                                      args.seed))
    print(f"\ntrained - untrained: {gain:+.4f} ± {gain_se:.4f} (paired SE; {gain / gain_se:.1f} SE)")
    print(f"trained - basic strategy ({basic['mean_return']:+.4f}): {to_basic:+.4f} ± {to_basic_se:.4f}")
    out = write_json("blackjack_learning", {
        "machine": machine(), "config": to_dict(config), "eval_episodes": n, "greedy": greedy, "rows": rows,
        "trained_minus_untrained": [gain, gain_se], "trained_minus_basic": [to_basic, to_basic_se],
        "training_minutes": t["s"] / 60, "run": summary, "peak_rss_gib": peak_rss_gib(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S")}, args.out)
    print(f"wrote {out}")


def _stats(returns: list[float]) -> dict:
    result = summarize(returns)
    return {"mean_return": result.mean_return, "stderr": result.stderr, "win_rate": result.win_rate}


if __name__ == "__main__":
    main()
