"""Does the agent learn a TextWorld adventure? Evaluate the default model on the CPU untrained, train it for a
fixed time budget (PPO through `llamagym run`'s own loop, optionally after a warm start on the game's walkthrough)
and evaluate it again, on the same seeded evaluation episodes.

One arm per invocation (`--arm`):

    untrained  evaluate the untrained model only
    ppo        PPO from fresh adapters (the textworld preset's settings), then evaluate
    sft-ppo    warm start: the game's scripted walkthrough (TextWorld games carry their winning commands) recorded
               as the agent's own conversation and fine-tuned on (`llamagym sft`'s run_sft), then PPO from that
               adapter (`llamagym run --init-adapter`), then evaluate

    python benchmarks/textworld_learning.py                                  # arm ppo, 30 minutes, 100 episodes
    python benchmarks/textworld_learning.py --arm untrained --eval-episodes 10 --eval-envs 1   # cost per turn
    python benchmarks/textworld_learning.py --arm sft-ppo --minutes 30
    python benchmarks/textworld_learning.py --env TextWorld-treasure_hunter-L5-s0 --set ppo.learning_rate=2e-4
    python benchmarks/textworld_learning.py --run runs/benchmark-textworld-ppo/run   # score a finished run
    python benchmarks/textworld_learning.py --set env_kwargs.max_steps=30           # shorter episodes

The default game, coin collector level 10 (seed 0), is a chain of ten rooms with the coin at the far end: the
untrained default model, picking among the admissible commands, takes it in about one episode in six (3 of 18
measured); the others run out of an episode's 50 commands. The game is fixed by the env id, so the evaluation
episodes differ by the policy's sampling (seeded alike for every row: the same env seeds, the same torch seed);
they are sampled, not greedy, since greedy decoding would play one episode 100 times.

Budget: `--minutes` (default 30) is the training time, warm start included (the sft-ppo arm gives PPO what the
warm start left). It is the run's own time limit (`llamagym run --max-minutes`): the run stops at its first
commit past the budget, right after an update, with a final checkpoint and its adapter, so a run may overrun by
one batch's rollouts and its update. `--episodes` only caps the run (default: 100000, never reached in 30
minutes).

Cost per turn: every evaluation records, for each turn index, the mean prompt length in tokens and the seconds
of the agent's act call per turn (one batched generation shared by the envs that wait, divided among them; with
`--eval-envs 1` it is one turn's own). With the preset's history cap (`generation.max_history_turns = 3`) both stay
flat as an episode grows; `--set generation.max_history_turns=0` shows the uncapped growth.

Writes JSON (every setting, budget used, machine, peak RSS, per-turn costs, the learning curve) and PNG curves
(training success rate per update; prompt tokens and seconds per turn) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from statistics import NormalDist
from typing import Any

from budget import learning_curve, train_for
from common import RESULTS, machine, parse_overrides, peak_rss_gib, print_table, timer, write_json
from llamagym.config import RunConfig, build, merge, to_dict
from llamagym.plugins.registry import get_registry
from llamagym.rollout.engine import EpisodeResult, episode_seed
from llamagym.run.setup import build_agent, config_from_run, make_engine, resolve_config
from llamagym.tools.evaluation import wilson_interval

ARMS = ("untrained", "ppo", "sft-ppo")
DEFAULT_ENV = "TextWorld-coin_collector-L10-s0"
TARGET_SUCCESS = 0.80  # the target for the trained agent
EPISODE_CAP = 100_000  # the budget stops training long before
SHOWN_TURNS = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50)  # turn indices in the printed cost table (the JSON has all)


# ---- intervals ---------------------------------------------------------------------------------------------------

def t_quantile(p: float, df: int) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher expansion around the
    normal quantile (within 0.004 of the exact value at 3 degrees of freedom, 1e-5 from 9 on)."""
    if df < 1:
        raise ValueError("t quantile needs at least one degree of freedom")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    terms = ((z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
             (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
    return z + sum(term / df ** (k + 1) for k, term in enumerate(terms))


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and its t interval: (mean, low, high); NaN for no values, the mean itself for one."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = sum(values) / n
    if n == 1:
        return (mean, mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return (mean, mean - half, mean + half)


def env_spec(config: RunConfig) -> Any:
    """The env the run plays: the registered one, made with the run's `env_kwargs` (`--set env_kwargs.max_steps=20`)
    where the library has them."""
    from llamagym.run import setup

    return setup.run_env(config) if hasattr(setup, "run_env") else get_registry().env(config.env)


# ---- evaluation --------------------------------------------------------------------------------------------------

class TurnCost:
    """Records, per turn index of an episode (1 = its first command), the prompt length in tokens and the seconds
    of the agent's act call per turn, by wrapping the agent's `act_batch` (every engine calls it)."""

    def __init__(self, agent: Any):
        self.tokens: dict[int, list[int]] = defaultdict(list)
        self.seconds: dict[int, list[float]] = defaultdict(list)
        self.calls = 0
        original = agent.act_batch

        def act_batch(observations: Any) -> Any:
            before = {slot: len(agent.current_episode(slot).turns) if agent.current_episode(slot) else 0
                      for slot in observations}
            started = time.perf_counter()
            actions = original(observations)
            share = (time.perf_counter() - started) / max(len(observations), 1)
            self.calls += 1
            for slot in observations:
                turn = before[slot] + 1
                self.tokens[turn].append(len(agent.current_episode(slot).turns[-1].query_ids))
                self.seconds[turn].append(share)
            return actions

        agent.act_batch = act_batch

    def rows(self) -> list[dict[str, Any]]:
        return [{"turn": turn, "samples": len(self.tokens[turn]),
                 "prompt_tokens": sum(self.tokens[turn]) / len(self.tokens[turn]),
                 "max_prompt_tokens": max(self.tokens[turn]),
                 "seconds": sum(self.seconds[turn]) / len(self.seconds[turn])} for turn in sorted(self.tokens)]


def flatness(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How much the cost per turn grows: the mean over turns 41-50 (else the last ten recorded, if they lie past
    turn 10) over the mean of turns 4-10 (past the history cap's fill-up), for the prompt tokens and the seconds;
    None where the episodes were too short to compare."""
    def mean_of(key: str, lo: int, hi: int) -> float | None:
        picked = [r[key] for r in rows if lo <= r["turn"] <= hi]
        return sum(picked) / len(picked) if picked else None

    last = max((r["turn"] for r in rows), default=0)
    late = (41, 50) if last >= 50 else (last - 9, last)
    out: dict[str, Any] = {"early_turns": [4, 10], "late_turns": list(late) if late[0] > 10 else None}
    for key in ("prompt_tokens", "seconds"):
        early = mean_of(key, 4, 10)
        later = mean_of(key, *late) if late[0] > 10 else None  # episodes too short to compare
        out[f"{key}_early"], out[f"{key}_late"] = early, later
        out[f"{key}_ratio"] = later / early if early and later is not None else None
    return out


def evaluate(config: RunConfig, adapter: str | None, episodes: int, num_envs: int | None = None
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Play the evaluation episodes with the untrained (`adapter` None) or a trained agent, sampling as the run
    does; returns its summary row and its cost per turn."""
    agent = build_agent(config, adapter=adapter)  # seeds torch with config.seed: every row samples alike
    cost = TurnCost(agent)
    evaluation = build(RunConfig, {"num_envs": num_envs or config.num_envs}, base=config)
    engine = make_engine(agent, env_spec(config), evaluation, group_size=1)
    try:
        with timer() as t:
            results = engine.run(episodes, learn=False)
    finally:
        engine.close()
    results.sort(key=lambda r: r.index)
    row = summarize_episodes(results)
    row["seconds"] = t["s"]
    row["eval_envs"] = evaluation.num_envs
    row["flatness"] = flatness(cost.rows())
    return row, cost.rows()


def summarize_episodes(results: list[EpisodeResult]) -> dict[str, Any]:
    """Success rate with its 95 % Wilson interval, mean steps with its 95 % t interval (every episode, and the
    won ones), invalid-answer rate, dropped episodes, and the seeds played."""
    played = [r for r in results if r.error is None]
    wins = sum(r.outcome == "win" for r in played)
    steps = [float(r.turns) for r in played]
    won_steps = [float(r.turns) for r in played if r.outcome == "win"]
    mean, low, high = mean_interval(steps)
    won_mean, won_low, won_high = mean_interval(won_steps)
    turns = sum(r.turns for r in played)
    return {"episodes": len(played), "successes": wins, "success_rate": wins / max(len(played), 1),
            "success_ci": list(wilson_interval(wins, len(played))), "mean_steps": mean, "steps_ci": [low, high],
            "mean_steps_won": won_mean, "steps_won_ci": [won_low, won_high],
            "invalid_rate": sum(r.invalid_turns for r in played) / max(turns, 1),
            "dropped": len(results) - len(played), "seeds": [r.seed for r in results]}


# ---- the warm start: the walkthrough as demonstrations ----------------------------------------------------------

def walkthrough_records(config: RunConfig, episodes: int) -> list[dict[str, Any]]:
    """Play the game's walkthrough (`info["walkthrough"]`, TextWorld's winning commands) through the agent's own
    `record_responses`, so each conversation reads exactly as if the model had answered (system prompt, cleaned
    observations, `command: <cmd>`), in `llamagym collect`'s record format for `llamagym sft`."""
    agent = build_agent(config)
    env = env_spec(config).make()
    records = []
    try:
        for index in range(episodes):
            seed = episode_seed(config.seed, index)
            observation, info = env.reset(seed=seed)
            total, won, turns = 0.0, False, 0
            for command in info["walkthrough"]:
                offered = {c.lower(): c for c in info.get("admissible_commands") or []}
                command = offered.get(command.lower(), command)  # as the observation lists it
                action = agent.record_responses({0: observation}, {0: agent.format_action(command)})[0]
                if action.lower() != command.lower():
                    raise RuntimeError(f"the agent reads its demonstration {command!r} back as {action!r}")
                observation, reward, terminated, truncated, info = env.step(action)
                agent.assign_reward(float(reward))
                total, turns = total + float(reward), turns + 1
                if terminated or truncated:
                    won = bool(info.get("is_success"))
                    break
            if not won:
                raise RuntimeError(f"the walkthrough of {config.env} did not win the game ({turns} commands)")
            records.append({"agent": config.agent, "env": config.env, "policy": "walkthrough", "index": index,
                            "seed": seed, "return": total, "turns": turns, "invalid_turns": 0,
                            "messages": agent.messages(0)})
            agent.end_episode(0)
    finally:
        env.close()
    return records


def warm_start(config: RunConfig, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Record the walkthrough demonstrations and fine-tune the adapter on them; returns the SFT summary."""
    from llamagym.tools.collect import write_jsonl
    from llamagym.tools.sft import SFTSettings, run_sft

    with timer() as t:
        records = walkthrough_records(config, args.expert_episodes)
    write_jsonl(root / "walkthrough.jsonl", records)
    settings = SFTSettings(epochs=args.sft_epochs, learning_rate=args.sft_learning_rate,
                           batch_size=args.sft_batch_size, unique=True)
    summary = run_sft(config, [str(root / "walkthrough.jsonl")], root / "sft", settings, overwrite=True,
                      show_progress=not args.quiet)
    return {**summary, "record_seconds": t["s"], "walkthrough": [m["content"] for m in records[0]["messages"]
                                                                 if m["role"] == "assistant"],
            "settings": vars(settings)}


def plot(report: dict[str, Any], output: Path) -> Path:
    """Three panels: the training success rate per update (with the evaluation rates beside it), and the prompt
    tokens and seconds per turn index of each evaluation."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(14, 4.2), layout="constrained")
    figure.suptitle(f"{report['config']['env']}, arm {report['arm']}")
    curve_ax, tokens_ax, seconds_ax = figure.subplots(1, 3)
    curve = report.get("learning_curve") or []
    if curve:
        xs = [p["episodes"] for p in curve]
        curve_ax.plot(xs, [p["success_rate"] for p in curve], marker=".", label="training episodes (per update)")
        curve_ax.fill_between(xs, [p["success_ci"][0] for p in curve], [p["success_ci"][1] for p in curve],
                              alpha=0.15)
    else:
        curve_ax.text(0.5, 0.5, "no training", ha="center", va="center", transform=curve_ax.transAxes)
    for i, row in enumerate(report["rows"]):
        color = f"C{i + 1}"
        low, high = row["success_ci"]
        curve_ax.axhline(row["success_rate"], color=color, linestyle="--",
                         label=f"eval, {row['policy']}: {row['success_rate']:.2f}")
        curve_ax.axhspan(low, high, color=color, alpha=0.08)
        costs = report["turn_cost"][row["key"]]
        turns = [c["turn"] for c in costs]
        tokens_ax.plot(turns, [c["prompt_tokens"] for c in costs], color=color, label=row["policy"])
        seconds_ax.plot(turns, [c["seconds"] for c in costs], color=color, label=row["policy"])
    curve_ax.set(title="success rate", xlabel="training episodes", ylabel="success rate", ylim=(-0.02, 1.02))
    tokens_ax.set(title="prompt length per turn", xlabel="turn of the episode", ylabel="prompt tokens (mean)")
    seconds_ax.set(title="act time per turn", xlabel="turn of the episode", ylabel="seconds (mean)")
    for ax in (curve_ax, tokens_ax, seconds_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    return output


# ---- the benchmark -----------------------------------------------------------------------------------------------

def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=ARMS, default="ppo")
    parser.add_argument("--env", default=DEFAULT_ENV, help=f"TextWorld env id [default: {DEFAULT_ENV}]")
    parser.add_argument("--model", default="default")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="training budget in minutes, warm start included [default: 30]")
    parser.add_argument("--episodes", type=int, default=EPISODE_CAP,
                        help="most training episodes (the budget stops the run first) [default: %(default)s]")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--eval-envs", type=int, help="envs stepped together in evaluation [default: the run's]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. ppo.learning_rate=2e-4 (repeatable)")
    parser.add_argument("--expert-episodes", type=int, default=1,
                        help="sft-ppo: walkthrough episodes recorded (the game is fixed: one suffices)")
    parser.add_argument("--sft-epochs", type=float, default=30.0)
    parser.add_argument("--sft-learning-rate", type=float, default=5e-4)
    parser.add_argument("--sft-batch-size", type=int, default=8)
    parser.add_argument("--skip-sft-eval", action="store_true", help="sft-ppo: do not evaluate after the warm start")
    parser.add_argument("--run", type=Path, help="evaluate this finished `llamagym run` directory (its settings "
                        "and adapter) instead of training")
    parser.add_argument("--skip-untrained", action="store_true", help="do not evaluate the untrained model")
    parser.add_argument("--output", help="working directory [default: runs/benchmark-textworld-ARM]")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/textworld_learning-ARM.json]")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.run and args.arm == "sft-ppo":
        parser.error("--run evaluates a finished run: use it with --arm ppo")
    return args


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate, train and evaluate as `args` says; prints the tables, writes the JSON and PNG; returns the
    report."""
    flags = {"agent": "textworld", "env": args.env, "model": args.model, "seed": args.seed,
             "episodes": args.episodes}
    config = resolve_config(merge(flags, parse_overrides(args.overrides)))
    if args.run:  # the run's own settings; the evaluation seeds stay those of --seed, shared by every row
        config = build(RunConfig, {"seed": args.seed}, base=config_from_run(args.run) or config)
    root = Path(args.output or f"runs/benchmark-textworld-{args.arm}")
    root.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"textworld_learning-{args.arm}.json"
    started = time.perf_counter()
    n = args.eval_episodes
    rows: list[dict[str, Any]] = []
    costs: dict[str, list[dict[str, Any]]] = {}
    report: dict[str, Any] = {"arm": args.arm}
    budget: dict[str, Any] = {"allowed_minutes": args.minutes}

    def scored(key: str, policy: str, adapter: str | None) -> None:
        row, cost = evaluate(config, adapter, n, args.eval_envs)
        rows.append({"key": key, "policy": policy, **row})
        costs[key] = cost

    if not args.skip_untrained:
        scored("untrained", "untrained", None)
    run_config = config
    if args.arm == "sft-ppo":
        with timer() as t:
            report["sft"] = warm_start(config, args, root)
        budget["warm_start_minutes"] = t["s"] / 60
        run_config = build(RunConfig, {"init_adapter": str(root / "sft")}, base=config)
        if not args.skip_sft_eval:
            scored("sft", "walkthrough SFT", report["sft"]["adapter"])
    if args.arm != "untrained":
        if args.run:
            run_dir = args.run
            report["run"] = json.loads((run_dir / "summary.json").read_text())
            budget["ppo_minutes"] = report["run"]["wall_time_s"] / 60
        else:
            run_dir = root / "run"
            left = args.minutes - budget.get("warm_start_minutes", 0.0)
            report["run"] = train_for(run_config, run_dir, left, show_progress=not args.quiet)
            budget["ppo_minutes"] = report["run"]["minutes"]
            budget["stopped_by_budget"] = report["run"]["stopped_by_budget"]
        report["learning_curve"] = learning_curve(run_dir, "env/win_rate", "env/episodes")
        label = "SFT, then PPO" if args.arm == "sft-ppo" else "PPO"
        scored("trained", f"{label} ({report['run']['episodes']} episodes)", str(run_dir / "adapter"))
        from llamagym.tools.plotting import plot_run

        report["run_plot"] = str(plot_run(run_dir, out.with_name(f"{out.stem}-run.png")))
    budget["training_minutes"] = budget.get("warm_start_minutes", 0.0) + budget.get("ppo_minutes", 0.0)

    report.update({"machine": machine(), "config": to_dict(config), "eval_episodes": n, "sampled": True,
                   "rows": rows, "turn_cost": costs, "budget": budget,
                   "total_minutes": (time.perf_counter() - started) / 60, "peak_rss_gib": peak_rss_gib(),
                   "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    if args.arm != "untrained" and rows:
        final = rows[-1]
        report["target"] = {"success_rate": TARGET_SUCCESS, "met": final["success_rate"] >= TARGET_SUCCESS,
                            "score": final["success_rate"]}
    report["plot"] = str(out.with_suffix(".png"))
    plot(report, out.with_suffix(".png"))
    out = write_json(f"textworld_learning-{args.arm}", report, str(out))
    show(report)
    print(f"wrote {out} and {report['plot']}")
    return report


def show(report: dict[str, Any]) -> None:
    """The evaluation table, the cost-per-turn table, the learning curve's ends and the target."""
    config, budget = report["config"], report["budget"]
    print(f"\n{config['env']}, arm {report['arm']}: {report['eval_episodes']} sampled evaluation episodes (the same "
          f"seeds for every row), history cap {config['generation']['max_history_turns']} turns; training "
          f"{budget['training_minutes']:.1f} of {budget['allowed_minutes']:g} min")
    print_table([{**r, "success 95% CI": "[{:.3f}, {:.3f}]".format(*r["success_ci"]),
                  "steps 95% CI": "[{:.1f}, {:.1f}]".format(*r["steps_ci"])} for r in report["rows"]],
                ["policy", "episodes", "success_rate", "success 95% CI", "mean_steps", "steps 95% CI",
                 "mean_steps_won", "invalid_rate", "seconds"])
    print("\ncost per turn: mean prompt tokens, act seconds per turn, episodes that reached the turn")
    table = []
    for turn in SHOWN_TURNS:
        entry: dict[str, Any] = {"turn": turn}
        for key, costs in report["turn_cost"].items():
            found = next((c for c in costs if c["turn"] == turn), None)
            if found:
                entry[f"{key} tokens"] = round(found["prompt_tokens"], 1)
                entry[f"{key} s"] = round(found["seconds"], 3)
                entry[f"{key} n"] = found["samples"]
        if len(entry) > 1:
            table.append(entry)
    print_table(table, ["turn", *[f"{key} {k}" for key in report["turn_cost"] for k in ("tokens", "s", "n")]])
    for row in report["rows"]:
        f = row["flatness"]
        if f["prompt_tokens_ratio"] is not None and f["seconds_ratio"] is not None:
            print(f"{row['key']}: turns {f['late_turns'][0]}-{f['late_turns'][1]} over turns 4-10: prompt tokens "
                  f"x{f['prompt_tokens_ratio']:.2f}, seconds x{f['seconds_ratio']:.2f}")
    curve = report.get("learning_curve") or []
    if curve:
        print("\ntraining success rate per update: " + ", ".join(f"{p['success_rate']:.2f}" for p in curve))
    if "target" in report:
        t = report["target"]
        print(f"target success >= {t['success_rate']:.0%}: {t['score']:.3f} -> {'met' if t['met'] else 'missed'}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_benchmark(arguments(argv))


if __name__ == "__main__":
    main()
