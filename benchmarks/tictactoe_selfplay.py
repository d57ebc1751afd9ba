"""Tic-tac-toe self-play benchmark: win / draw / loss rates against a random-move opponent and the illegal-move
rate, before and after training the default model by self-play for a fixed budget, with 95% Wilson intervals.

    python benchmarks/tictactoe_selfplay.py --episodes 400 --eval-episodes 200     # full budget (CPU: hours)
    python benchmarks/tictactoe_selfplay.py --episodes 16 --eval-episodes 16       # smoke test

With `--expert-games N` the run starts warm: N games of the perfect (minimax) player against a random opponent
are collected as demonstrations (`llamagym collect --policy expert`), the adapter is fine-tuned on them
(`llamagym sft`), evaluated, and PPO continues from it (`--init-adapter`); `--episodes 0` stops after the SFT:

    python benchmarks/tictactoe_selfplay.py --expert-games 300 --play opponent --train-opponent random \
        --episodes 100 --eval-episodes 200 --modes greedy

Each evaluation plays the same seeded games, the agent taking X in half of them and O in the other half, once
with greedy decoding and once sampling (as in training). Prints a table per mode, including the share of games
with no loss (the issue's target: at least 90% against random), and writes JSON and the PPO curves (PNG) to
benchmarks/results/. A claim of learning needs the "after" interval clear of the "before" one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common import RESULTS, parse_overrides
from llamagym.tools.evaluation import wilson_interval


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=400, help="PPO training games (0: none)")
    parser.add_argument("--eval-episodes", type=int, default=200, help="games against the opponent, per evaluation")
    parser.add_argument("--opponent", default="random", help="evaluation opponent (random, heuristic, base, a run)")
    parser.add_argument("--play", default="selfplay", choices=("selfplay", "opponent"),
                        help="training: self-play, or against --train-opponent")
    parser.add_argument("--train-opponent", default="random", help="the training opponent with --play opponent")
    parser.add_argument("--model", default="default")
    parser.add_argument("--num-envs", type=int, default=16, help="game tables played at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="greedy,sampled",
                        help="decoding modes to evaluate, comma-separated: greedy, sampled")
    parser.add_argument("--run-dir", type=Path, default=None, help="training run directory [default: a temp dir]")
    parser.add_argument("--output", type=Path, default=None, help="JSON file [default: benchmarks/results/...]")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a training setting, e.g. --set ppo.learning_rate=2e-4 (repeatable)")
    parser.add_argument("--expert-games", type=int, default=0,
                        help="warm start: games of the perfect player against random to fine-tune on (0: none)")
    parser.add_argument("--sft-epochs", type=float, default=4.0)
    parser.add_argument("--sft-learning-rate", type=float, default=5e-4)
    parser.add_argument("--sft-batch-size", type=int, default=16)
    parser.add_argument("--sft-all-examples", action="store_true",
                        help="fine-tune on every demonstrated move, repeats included (default: each distinct once)")
    return parser.parse_args()


def settings(args: argparse.Namespace, **extra: Any) -> Any:
    """The run config: the tictactoe preset, then the benchmark's flags and `--set` overrides."""
    from llamagym.config import merge
    from llamagym.run.setup import resolve_config

    flags = {"agent": "tictactoe", "env": "tictactoe_v3", "model": args.model, "num_envs": args.num_envs,
             "seed": args.seed, **extra}
    return resolve_config(merge(flags, parse_overrides(args.set)))


def counting_agent_class() -> type:
    from llamagym.rollout.games.game_agent import IllegalMoveError
    from llamagym.errors import ActionParseError
    from llamagym_pettingzoo.tictactoe import TicTacToeAgent

    class CountingTicTacToeAgent(TicTacToeAgent):
        """The tictactoe agent, counting its unparsable answers and its answers naming a taken cell."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.unparsable = self.illegal = 0

        def extract_action(self, response: str, observation: Any) -> Any:
            try:
                return super().extract_action(response, observation)
            except IllegalMoveError:
                self.illegal += 1
                raise
            except ActionParseError:
                self.unparsable += 1
                raise

    return CountingTicTacToeAgent


def evaluate_against(args: argparse.Namespace, adapter: str | None) -> dict[str, dict[str, Any]]:
    """`eval_episodes` games against the opponent per decoding mode (the agent alternating seats): rates,
    intervals and move counts, keyed by mode ("greedy", "sampled")."""
    from llamagym.config import to_dict
    from llamagym.tools.evaluation import evaluate
    from llamagym.policy.models import load_model
    from llamagym.plugins.registry import get_registry
    from llamagym.run.setup import make_engine, seed_everything

    config = settings(args, multiagent={"play": "opponent", "opponent": args.opponent, "learner_seat": "alternate"})
    seed_everything(config.seed)
    model, tokenizer = load_model(config.model, config.lora, adapter=adapter)
    agent = counting_agent_class()(model, tokenizer, config.device, generate_config_dict=to_dict(config.generation),
                                   ppo_config_dict=to_dict(config.ppo), precision=config.precision,
                                   seed=config.seed)
    engine = make_engine(agent, get_registry().env(config.env), config)
    out = {}
    for mode in args.modes.split(","):
        moves = {"turns": 0, "invalid": 0}
        agent.unparsable = agent.illegal = 0

        def count(result: Any) -> None:
            moves["turns"] += result.turns
            moves["invalid"] += result.invalid_turns

        started = time.perf_counter()
        result = evaluate(agent, engine, args.eval_episodes, greedy=mode == "greedy", on_episode=count)
        out[mode] = {**result.to_dict(), "turns": moves["turns"], "invalid_turns": moves["invalid"],
                     "invalid_ci": wilson_interval(moves["invalid"], moves["turns"]),
                     "unparsable_turns": agent.unparsable, "illegal_cell_turns": agent.illegal,
                     "seconds": time.perf_counter() - started}
    engine.close()
    return out


def warm_start(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Demonstrations of the perfect player against a random opponent (alternating seats), fine-tuned on."""
    from llamagym.tools.collect import collect, collecting, write_jsonl
    from llamagym.plugins.registry import get_registry
    from llamagym.run.setup import build_agent, make_engine
    from llamagym.tools.sft import SFTSettings, run_sft

    config = settings(args, multiagent={"play": "opponent", "opponent": "random", "learner_seat": "alternate"})
    agent = collecting(build_agent(config), expert=True)
    engine = make_engine(agent, get_registry().env(config.env), config, group_size=1)
    started = time.perf_counter()
    data = collect(agent, engine, args.expert_games, tags={"agent": config.agent, "env": config.env,
                                                           "policy": "expert"})
    engine.close()
    write_jsonl(work / "expert.jsonl", data.records)
    collected = time.perf_counter() - started
    sft = SFTSettings(epochs=args.sft_epochs, learning_rate=args.sft_learning_rate, batch_size=args.sft_batch_size,
                      unique=not args.sft_all_examples)
    summary = run_sft(config, [str(work / "expert.jsonl")], work / "sft", sft, overwrite=True)
    return {**summary, "collect_seconds": collected, "expert_mean_return": data.mean_return,
            "expert_losses": sum(r["return"] < 0 for r in data.records), "settings": vars(sft),
            "seconds": time.perf_counter() - started}


def train(args: argparse.Namespace, run_dir: Path, init_adapter: str = "") -> dict[str, Any]:
    from llamagym.config import to_dict
    from llamagym.run.training import train as run_training

    config = settings(args, episodes=args.episodes, init_adapter=init_adapter,
                      multiagent={"play": args.play, "opponent": args.train_opponent})
    started = time.perf_counter()
    summary = run_training(config, run_dir, overwrite=True, show_progress=True)
    return {**summary, "seconds": time.perf_counter() - started, "config": to_dict(config)}


def cell(rate: float, interval: tuple[float, float]) -> str:
    return f"{rate:6.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def no_loss(result: dict[str, Any]) -> tuple[float, tuple[float, float]]:
    """The share of games not lost (won or drawn) and its 95% Wilson interval."""
    low, high = result["loss_ci"]
    return 1.0 - result["loss_rate"], (1.0 - high, 1.0 - low)


def table(columns: dict[str, dict[str, Any]], opponent: str, mode: str) -> str:
    """One column per evaluation (before, after SFT, after PPO) of one decoding mode."""
    first = next(iter(columns.values()))
    lines = [f"{mode} decoding against {opponent}: {first['episodes']} games per evaluation "
             f"(the agent alternates X and O)", f"{'':<18}" + "".join(f"{name:<26}" for name in columns)]
    for label, rate, ci in (("win rate", "win_rate", "win_ci"), ("draw rate", "draw_rate", "draw_ci"),
                            ("loss rate", "loss_rate", "loss_ci"), ("illegal-move rate", "invalid_rate", "invalid_ci")):
        lines.append(f"{label:<18}" + "".join(f"{cell(r[rate], r[ci]):<26}" for r in columns.values()))
    lines.append(f"{'no-loss rate':<18}" + "".join(f"{cell(*no_loss(r)):<26}" for r in columns.values()))
    for label, key in (("  unparsable", "unparsable_turns"), ("  taken cell", "illegal_cell_turns"),
                       ("agent moves", "turns")):
        lines.append(f"{label:<18}" + "".join(f"{r[key]:<26}" for r in columns.values()))
    return "\n".join(lines)


def target_line(result: dict[str, Any], mode: str, goal: float = 0.9) -> str:
    rate, (low, high) = no_loss(result)
    verdict = f"met with {rate - goal:.3f} to spare" if rate >= goal else f"missed by {goal - rate:.3f}"
    return (f"target: no loss in at least {goal:.0%} of games ({mode}): {rate:.3f} [{low:.3f}, {high:.3f}] -> "
            f"{verdict}")


def main() -> None:
    import tempfile

    args = parse_args()
    work = args.run_dir or Path(tempfile.mkdtemp(prefix="tictactoe-selfplay-"))
    warm = f"-warm{args.expert_games}" if args.expert_games else ""
    output = args.output or RESULTS / (f"tictactoe_selfplay{warm}-{args.episodes}ep-"
                                       f"{time.strftime('%Y%m%d-%H%M%S')}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = {"before": evaluate_against(args, adapter=None)}
    report: dict[str, Any] = {"benchmark": "tictactoe_selfplay", "episodes": args.episodes,
                              "eval_episodes": args.eval_episodes, "opponent": args.opponent, "play": args.play,
                              "modes": args.modes.split(","), "model": args.model, "seed": args.seed}
    init_adapter = ""
    if args.expert_games:
        report["warm_start"] = warm_start(args, work)
        init_adapter = str(work / "sft")
        columns["after SFT"] = evaluate_against(args, adapter=report["warm_start"]["adapter"])
    if args.episodes:
        report["training"] = train(args, work / "run", init_adapter)
        columns["after PPO" if args.expert_games else "after"] = evaluate_against(args, str(work / "run" / "adapter"))
        from llamagym.tools.plotting import plot_run

        report["plot"] = str(plot_run(work / "run", output.with_suffix(".png")))
    report.update({"before": columns["before"], "after": list(columns.values())[-1], "columns": columns,
                   "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    report["targets"] = [target_line(report["after"][mode], mode) for mode in report["after"]]
    output.write_text(json.dumps(report, indent=2))
    for mode in columns["before"]:
        print(table({name: column[mode] for name, column in columns.items()}, args.opponent, mode), end="\n\n")
    if args.expert_games:
        warm_start_report = report["warm_start"]
        print(f"warm start: {args.expert_games} perfect-player games ({warm_start_report['expert_losses']} lost), "
              f"SFT on {warm_start_report['examples']} moves in {warm_start_report['seconds']:.0f}s")
    if args.episodes:
        print(f"training: {args.episodes} games ({args.play}) in {report['training']['seconds']:.0f}s, "
              f"{report['training']['updates']} PPO updates")
    for line in report["targets"]:
        print(line)
    print(f"written to {output}")


if __name__ == "__main__":
    main()
