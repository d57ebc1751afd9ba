"""Does the agent learn Blackjack? Train the default model on Blackjack-v1 for a fixed budget on the CPU and
compare the untrained and trained agent with the reference policies, all on the same seeded evaluation episodes.

One arm per invocation (`--arm`):

    ppo        PPO from fresh adapters (the preset's settings)
    grpo       the same, with the group-relative baseline (ppo.advantage = grpo)
    reinforce  the same, with REINFORCE and a running baseline (ppo.advantage = reinforce)
    sft        warm start only: collect basic-strategy demonstrations, fine-tune on them (llamagym sft)
    sft-ppo    the warm start, then PPO from the fine-tuned adapter (llamagym run --init-adapter)

    python benchmarks/blackjack_learning.py                                 # arm ppo, the preset's budget
    python benchmarks/blackjack_learning.py --arm sft-ppo --episodes 1000 --sft-epochs 4
    python benchmarks/blackjack_learning.py --arm grpo --set ppo.group_size=8 --eval-episodes 4000
    python benchmarks/blackjack_learning.py --run runs/bj          # score a finished `llamagym run` instead

Besides the Monte Carlo returns on the evaluation episodes, greedy policies are scored exactly: with
max_history_turns = 1 the greedy answer depends on the observation alone, so the agent's answers in all 280
observations form a policy table whose expected return the dynamic programme of `strategy.policy_return` gives
without sampling noise (an invalid answer counts as the fallback's coin flip). With constrained answers the
sampling policy is scored exactly too, from the model's probability of each answer (`exact_sampled_return`).
Writes JSON and PNG curves to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import gymnasium as gym

from common import RESULTS, machine, parse_overrides, peak_rss_gib, print_table, timer, write_json
from llamagym.config import RunConfig, build, merge, to_dict
from llamagym.tools.evaluation import summarize
from llamagym.rollout.gym import RolloutEngine, episode_seed
from llamagym.run.setup import build_agent, config_from_run, resolve_config
from llamagym.run.training import train
from llamagym_blackjack.scoring import greedy_table, hit_probabilities  # the plugin's own, as `llamagym run` scores
from llamagym_blackjack.strategy import REFERENCE_POLICIES, basic_strategy, policy_return

ARMS = ("ppo", "grpo", "reinforce", "sft", "sft-ppo")
TARGET_PPO = -0.08  # the target for PPO alone: the stick-on-17 policy's level
TARGET_WARM_GAP = 0.02  # warm start: within this of basic strategy


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
    """Returns of the LLM agent (untrained if `adapter` is None) on the evaluation episodes, in index order, and
    for greedy decoding the exact return of its policy table and its agreement with basic strategy."""
    agent = build_agent(config, adapter=adapter)
    agent.generation.do_sample = not greedy
    engine = RolloutEngine(agent, lambda: gym.make("Blackjack-v1"), config.num_envs, config.seed)
    with timer() as t:
        results = engine.run(episodes, learn=False)
    results.sort(key=lambda r: r.index)
    turns = sum(r.turns for r in results)
    info = {"invalid_rate": sum(r.invalid_turns for r in results) / max(turns, 1), "seconds": t["s"]}
    if greedy and config.generation.max_history_turns == 1:
        table = greedy_table(agent)
        info["exact_return"] = policy_return(table.__getitem__)
        info["agrees_with_basic"] = sum(table[o] == basic_strategy(o) for o in table) / len(table)
    if config.generation.max_history_turns == 1:
        sampling = hit_probabilities(agent)  # None with free-text answers
        if sampling is not None:
            info["exact_sampled_return"] = policy_return(sampling.__getitem__)
    return [r.env_return for r in results], info


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and standard error of a - b over the same episodes (same seeds: a paired comparison)."""
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, math.sqrt(var / len(diffs))


def warm_start(config: RunConfig, args: argparse.Namespace, root: Path) -> dict:
    """Collect basic-strategy demonstrations and fine-tune the adapter on them; returns the SFT summary."""
    from llamagym.tools.collect import collect, collecting, write_jsonl
    from llamagym.plugins.registry import get_registry
    from llamagym.run.setup import make_engine
    from llamagym.tools.sft import SFTSettings, run_sft

    agent = collecting(build_agent(config), expert=True)
    engine = make_engine(agent, get_registry().env(config.env), config, group_size=1)
    with timer() as t:
        data = collect(agent, engine, args.expert_episodes, tags={"agent": config.agent, "env": config.env,
                                                                  "policy": "expert"})
    engine.close()
    write_jsonl(root / "expert.jsonl", data.records)
    settings = SFTSettings(epochs=args.sft_epochs, learning_rate=args.sft_learning_rate,
                           batch_size=args.sft_batch_size, unique=not args.sft_all_examples)
    summary = run_sft(config, [str(root / "expert.jsonl")], root / "sft", settings, overwrite=True)
    return {**summary, "collect_seconds": t["s"], "expert_mean_return": data.mean_return,
            "settings": vars(settings)}


def plot_sft_loss(sft_dir: Path, output: Path) -> Path:
    """The fine-tuning loss per logged step, as a PNG."""
    from matplotlib.figure import Figure

    from llamagym.run.metrics import read_jsonl
    from llamagym.run.rundir import SFT_METRICS_FILE

    rows = [r for r in read_jsonl(sft_dir / SFT_METRICS_FILE) if "loss" in r]
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker=".")
    ax.set(title="SFT on basic-strategy demonstrations", xlabel="step", ylabel="loss (answer tokens)")
    ax.grid(alpha=0.3)
    figure.savefig(output, dpi=100)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=ARMS, default="ppo")
    parser.add_argument("--model", default="default")
    parser.add_argument("--episodes", type=int, help="PPO training episodes [default: the preset's]")
    parser.add_argument("--eval-episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. ppo.learning_rate=2e-4 (repeatable)")
    parser.add_argument("--sample", action="store_true", help="evaluate with sampling instead of greedy decoding")
    parser.add_argument("--expert-episodes", type=int, default=2000, help="sft arms: demonstration episodes")
    parser.add_argument("--sft-epochs", type=float, default=4.0)
    parser.add_argument("--sft-learning-rate", type=float, default=5e-4)
    parser.add_argument("--sft-batch-size", type=int, default=16)
    parser.add_argument("--sft-all-examples", action="store_true",
                        help="fine-tune on every demonstrated turn, repeats included (default: each distinct once)")
    parser.add_argument("--run", type=Path, help="ppo arms: evaluate this finished `llamagym run` directory (its "
                        "settings and adapter) instead of training")
    parser.add_argument("--skip-untrained", action="store_true", help="do not evaluate the untrained model")
    parser.add_argument("--output", help="working directory [default: runs/benchmark-blackjack-ARM]")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/blackjack_learning-ARM.json]")
    args = parser.parse_args()

    flags = {"agent": "blackjack", "env": "Blackjack-v1", "model": args.model, "seed": args.seed}
    if args.arm in ("grpo", "reinforce"):
        flags["ppo"] = {"advantage": args.arm}
    if args.episodes:
        flags["episodes"] = args.episodes
    config = resolve_config(merge(flags, parse_overrides(args.overrides)))
    run_config = None
    if args.run:  # the run's own settings; evaluation seeds stay those of --seed, shared by every row
        if args.arm.startswith("sft"):
            parser.error("--run evaluates a PPO run; use it with --arm ppo, grpo or reinforce")
        run_config = config_from_run(args.run)
        config = build(RunConfig, {"seed": args.seed}, base=run_config)
    root = Path(args.output or f"runs/benchmark-blackjack-{args.arm}")
    root.mkdir(parents=True, exist_ok=True)
    n, greedy = args.eval_episodes, not args.sample
    out = Path(args.out) if args.out else RESULTS / f"blackjack_learning-{args.arm}.json"
    started = time.perf_counter()
    rows, report = [], {"arm": args.arm}
    if run_config is not None:
        report["run_config"] = to_dict(run_config)  # the run's own training seed among them
    for name, make in REFERENCE_POLICIES.items():
        exact = policy_return(lambda o, p=make(): float(p(o))) if name != "random" else policy_return(lambda o: 0.5)
        rows.append({"policy": name, **_stats(play_reference(make(), n, args.seed)), "exact_return": exact})
    basic_returns = play_reference(REFERENCE_POLICIES["basic strategy"](), n, args.seed)
    untrained = None
    if not args.skip_untrained:
        untrained, info = play_agent(config, None, n, greedy)
        rows.append({"policy": "LLM agent, untrained", **_stats(untrained), **info})

    adapter, budget = None, {}
    if args.arm in ("sft", "sft-ppo"):
        with timer() as t:
            report["sft"] = warm_start(config, args, root)
        budget["warm_start_minutes"] = t["s"] / 60
        adapter = report["sft"]["adapter"]
        returns, info = play_agent(config, adapter, n, greedy)
        rows.append({"policy": f"LLM agent, SFT ({report['sft']['examples']} turns x {args.sft_epochs:g} epochs)",
                     **_stats(returns), **info})
        report["sft_plot"] = str(plot_sft_loss(root / "sft", out.with_name(f"{out.stem}-sft.png")))
    if args.arm != "sft":
        run_config = build(RunConfig, {"init_adapter": str(root / "sft")}, base=config) if adapter else config
        run_dir = args.run or root / "run"
        if args.run:
            report["run"] = json.loads((run_dir / "summary.json").read_text())
            budget["ppo_minutes"] = report["run"]["wall_time_s"] / 60
        else:
            with timer() as t:
                report["run"] = train(run_config, run_dir, overwrite=True)
            budget["ppo_minutes"] = t["s"] / 60
        adapter = str(run_dir / "adapter")
        returns, info = play_agent(config, adapter, n, greedy)
        label = "SFT, then PPO" if args.arm == "sft-ppo" else f"PPO ({config.ppo.advantage})"
        rows.append({"policy": f"LLM agent, {label} ({config.episodes} episodes)", **_stats(returns), **info})
        from llamagym.tools.plotting import plot_run

        report["plot"] = str(plot_run(run_dir, out.with_suffix(".png")))

    final = returns
    print(f"\nBlackjack-v1, arm {args.arm}: {n} evaluation episodes (the same seeds for every row), "
          f"{'greedy' if greedy else 'sampled'} decoding; "
          + ", ".join(f"{k.replace('_minutes', '')} {v:.1f} min" for k, v in budget.items()))
    print_table(rows, ["policy", "mean_return", "stderr", "win_rate", "invalid_rate", "exact_return",
                       "exact_sampled_return", "agrees_with_basic"])
    if untrained is not None:
        report["trained_minus_untrained"] = paired_difference(final, untrained)
        print("\ntrained - untrained: {:+.4f} ± {:.4f} (paired SE)".format(*report["trained_minus_untrained"]))
    report["trained_minus_basic"] = paired_difference(final, basic_returns)
    print("trained - basic strategy: {:+.4f} ± {:.4f} (paired SE)".format(*report["trained_minus_basic"]))
    report["targets"] = targets(args.arm, rows[-1], rows)
    for line in report["targets"]["lines"]:
        print(line)
    out = write_json(f"blackjack_learning-{args.arm}", {
        "machine": machine(), "config": to_dict(config), "eval_episodes": n, "greedy": greedy, "rows": rows,
        **report, "budget_minutes": budget, "total_minutes": (time.perf_counter() - started) / 60,
        "peak_rss_gib": peak_rss_gib(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}, str(out))
    print(f"wrote {out}")


def targets(arm: str, final: dict, rows: list[dict]) -> dict:
    """The issue's targets for this arm, met or missed by how much (exact greedy return where there is one)."""
    basic = next(r for r in rows if r["policy"] == "basic strategy")
    score = final.get("exact_return", final["mean_return"])
    how = "exact greedy return" if "exact_return" in final else "mean return"
    if arm.startswith("sft"):
        goal = basic["exact_return"] - TARGET_WARM_GAP
        name = f"within {TARGET_WARM_GAP} of basic strategy ({basic['exact_return']:+.4f})"
    else:
        goal, name = TARGET_PPO, f"at least {TARGET_PPO} (stick on 17+)"
    met = score >= goal
    line = (f"target {name}: {how} {score:+.4f} -> {'met' if met else 'missed'} "
            f"{'with' if met else 'by'} {abs(score - goal):.4f}")
    return {"goal": goal, "score": score, "met": met, "lines": [line]}


def _stats(returns: list[float]) -> dict:
    result = summarize(returns)
    return {"mean_return": result.mean_return, "stderr": result.stderr, "win_rate": result.win_rate}


if __name__ == "__main__":
    main()
