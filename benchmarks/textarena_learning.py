"""Does the agent learn a two-player TextArena game against a fixed opponent? Evaluate the default model on the
CPU untrained, train it with PPO against the opponent for a fixed time budget (`llamagym run`'s own loop and time
limit), and evaluate it again on the same seeded games, the agent taking each seat in half of them.

    python benchmarks/textarena_learning.py                                   # Kuhn poker, 5 rounds, 30 minutes
    python benchmarks/textarena_learning.py --env TextArena-TicTacToe-v0 --minutes 10 --eval-games 100
    python benchmarks/textarena_learning.py --set ppo.learning_rate=3e-4 --set ppo.batch_size=64
    python benchmarks/textarena_learning.py --run runs/benchmark-textarena/run    # score a finished run

The default game is TextArena's `KuhnPoker-v0-short`: five rounds of three-card poker (J, Q, K; check, bet, call,
fold), won by whoever holds more chips at the end. Against `random-move` (a uniformly random listed move) a player
that answers at random wins about 53 % of games, and the simple policy "always bet, always call" about 83 %
(measured with the env alone, 600 games each): the target, 80 %, asks for about that policy. Rewards are the
game's own (1 win, -1 loss); the agent chooses among the listed moves.

Rows: a `random` reference (uniform among the listed moves, played in the learner's seats with the env alone),
the untrained model, and the trained one, each over `--eval-games` games (default 200) with 95 % Wilson
intervals; greedy decoding unless `--sample`. Writes JSON (settings, budget used, machine, peak RSS, the learning
curve) and a PNG (the training win rate per update, the evaluations beside it) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from budget import learning_curve, train_for
from common import RESULTS, machine, parse_overrides, peak_rss_gib, print_table, timer, write_json
from llamagym.config import RunConfig, build, merge, to_dict
from llamagym.rollout.engine import episode_seed
from llamagym.run.setup import build_agent, config_from_run, make_engine, resolve_config, run_env
from llamagym.tools.evaluation import evaluate, summarize

DEFAULT_ENV = "TextArena-KuhnPoker-v0-short"
TARGET_WIN = 0.80
EPISODE_CAP = 100_000  # games; the budget stops training long before


def game_config(args: argparse.Namespace) -> RunConfig:
    """The textarena preset, against `--opponent` in alternating seats, then the `--set` overrides."""
    flags = {"agent": "textarena", "env": args.env, "model": args.model, "seed": args.seed,
             "episodes": args.episodes,
             "multiagent": {"play": "opponent", "opponent": args.opponent, "learner_seat": "alternate"}}
    config = resolve_config(merge(flags, parse_overrides(args.overrides)))
    if args.run:  # the run's own settings; the evaluation games stay those of --seed, shared by every row
        config = build(RunConfig, {"seed": args.seed}, base=config_from_run(args.run) or config)
    return config


def evaluate_model(config: RunConfig, adapter: str | None, games: int, greedy: bool) -> dict[str, Any]:
    """`games` games of the untrained (`adapter` None) or a trained agent against the opponent: the library's
    own evaluation (`llamagym eval`'s), with its rates and intervals."""
    agent = build_agent(config, adapter=adapter)
    engine = make_engine(agent, run_env(config), config)
    try:
        with timer() as t:
            result = evaluate(agent, engine, games, greedy=greedy)
    finally:
        engine.close()
    return {**result.to_dict(), "seconds": t["s"]}


def random_reference(config: RunConfig, games: int) -> dict[str, Any]:
    """The same opponent against a player that picks uniformly among the listed moves, in alternating seats,
    played on the env alone (no model): the level an untrained policy that knew only the rules would reach."""
    env = run_env(config).make()
    rng = random.Random(config.seed)
    returns: list[float] = []
    with timer() as t:
        for index in range(games):
            env.reset(seed=episode_seed(config.seed, index, evaluation=True))
            seat = env.possible_agents[index % 2]
            total = 0.0
            for agent in env.agent_iter():
                _, reward, terminated, truncated, info = env.last()
                if agent == seat:
                    total += float(reward)
                moves = (info or {}).get("legal_moves") or []
                env.step(None if terminated or truncated else rng.choice(moves))
            returns.append(total)
    env.close()
    return {**summarize(returns).to_dict(), "seconds": t["s"]}


def plot(report: dict[str, Any], output: Path) -> Path:
    """The training win rate per update, with each evaluation's rate and interval beside it."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.subplots()
    curve = report.get("learning_curve") or []
    if curve:
        xs = [p["episodes"] for p in curve]
        ax.plot(xs, [p["success_rate"] for p in curve], marker=".", label="training games (per update)")
        ax.fill_between(xs, [p["success_ci"][0] for p in curve], [p["success_ci"][1] for p in curve], alpha=0.15)
    for i, row in enumerate(report["rows"]):
        color = f"C{i + 1}"
        ax.axhline(row["win_rate"], color=color, linestyle="--", label=f"eval, {row['policy']}: {row['win_rate']:.2f}")
        ax.axhspan(*row["win_ci"], color=color, alpha=0.08)
    ax.axhline(TARGET_WIN, color="black", linewidth=0.8, label=f"target {TARGET_WIN:.0%}")
    ax.set(title=f"{report['config']['env']} against {report['config']['multiagent']['opponent']}",
           xlabel="training games", ylabel="win rate", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    return output


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=DEFAULT_ENV, help=f"a two-player TextArena env id [default: {DEFAULT_ENV}]")
    parser.add_argument("--opponent", default="random-move", help="the fixed opponent [default: random-move]")
    parser.add_argument("--model", default="default")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget in minutes [default: 30]")
    parser.add_argument("--episodes", type=int, default=EPISODE_CAP,
                        help="most training games (the budget stops the run first) [default: %(default)s]")
    parser.add_argument("--eval-games", type=int, default=200)
    parser.add_argument("--sample", action="store_true", help="evaluate sampling, as in training (default: greedy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. ppo.learning_rate=3e-4 (repeatable)")
    parser.add_argument("--run", type=Path, help="evaluate this finished `llamagym run` directory instead of training")
    parser.add_argument("--output", help="working directory [default: runs/benchmark-textarena]")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/textarena_learning.json]")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate, train and evaluate as `args` says; prints the table, writes the JSON and PNG; returns the report."""
    config = game_config(args)
    root = Path(args.output or "runs/benchmark-textarena")
    out = Path(args.out) if args.out else RESULTS / "textarena_learning.json"
    started = time.perf_counter()
    n, greedy = args.eval_games, not args.sample
    rows = [{"key": "random", "policy": "random listed move", **random_reference(config, n)},
            {"key": "untrained", "policy": "untrained", **evaluate_model(config, None, n, greedy)}]
    if args.run:
        run_dir = args.run
        run = json.loads((run_dir / "summary.json").read_text())
        budget = {"allowed_minutes": args.minutes, "training_minutes": run["wall_time_s"] / 60}
    else:
        run_dir = root / "run"
        run = train_for(config, run_dir, args.minutes, show_progress=not args.quiet)
        budget = {"allowed_minutes": args.minutes, "training_minutes": run["minutes"],
                  "stopped_by_budget": run["stopped_by_budget"]}
    rows.append({"key": "trained", "policy": f"PPO ({run['episodes']} games)",
                 **evaluate_model(config, str(run_dir / "adapter"), n, greedy)})
    trained, untrained = rows[-1], rows[1]
    report: dict[str, Any] = {
        "machine": machine(), "config": to_dict(config), "eval_games": n, "greedy": greedy, "rows": rows,
        "run": run, "budget": budget, "learning_curve": learning_curve(run_dir, "game/win_rate", "game/games"),
        "target": {"win_rate": TARGET_WIN, "score": trained["win_rate"], "met": trained["win_rate"] >= TARGET_WIN,
                   "clear_of_untrained": trained["win_ci"][0] > untrained["win_ci"][1]},
        "total_minutes": (time.perf_counter() - started) / 60, "peak_rss_gib": peak_rss_gib(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    report["plot"] = str(plot(report, out.with_suffix(".png")))
    path = write_json("textarena_learning", report, str(out))
    show(report)
    print(f"wrote {path} and {report['plot']}")
    return report


def show(report: dict[str, Any]) -> None:
    config, budget, target = report["config"], report["budget"], report["target"]
    print(f"\n{config['env']} against {config['multiagent']['opponent']}: {report['eval_games']} "
          f"{'greedy' if report['greedy'] else 'sampled'} evaluation games per row (the same seeds, seats "
          f"alternating); training {budget['training_minutes']:.1f} of {budget['allowed_minutes']:g} min")
    print_table([{**r, "win 95% CI": "[{:.3f}, {:.3f}]".format(*r["win_ci"])} for r in report["rows"]],
                ["policy", "episodes", "win_rate", "win 95% CI", "draw_rate", "loss_rate", "mean_return",
                 "invalid_rate", "seconds"])
    curve = report["learning_curve"]
    if curve:
        print("training win rate per update: " + ", ".join(f"{p['success_rate']:.2f}" for p in curve))
    print(f"target win rate >= {target['win_rate']:.0%}: {target['score']:.3f} -> "
          f"{'met' if target['met'] else 'missed'}; interval clear of the untrained one: "
          f"{'yes' if target['clear_of_untrained'] else 'no'}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_benchmark(arguments(argv))


if __name__ == "__main__":
    main()
