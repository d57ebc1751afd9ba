"""Tic-tac-toe self-play benchmark: win / draw / loss rates against a random-move opponent and the illegal-move
rate, before and after training the default model by self-play for a fixed budget, with 95% Wilson intervals.

    python benchmarks/tictactoe_selfplay.py --episodes 400 --eval-episodes 200     # full budget (CPU: hours)
    python benchmarks/tictactoe_selfplay.py --episodes 16 --eval-episodes 16       # smoke test

Each evaluation plays the same seeded games, the agent taking X in half of them and O in the other half, once
with greedy decoding and once sampling (as in training). Prints a table per mode and writes JSON to
benchmarks/results/. A claim of learning needs the "after" interval clear of the "before" one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from llamagym.evaluation import wilson_interval

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=400, help="self-play training games")
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
    return parser.parse_args()


def overrides(pairs: list[str]) -> dict[str, Any]:
    """`ppo.batch_size=32` style settings as a nested config dict (values read as TOML scalars)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        section, _, name = key.rpartition(".")
        value = tomllib.loads(f"v = {raw}")["v"]
        (out.setdefault(section, {}) if section else out)[name] = value
    return out


def settings(args: argparse.Namespace, **extra: Any) -> Any:
    """The run config: the tictactoe preset, then the benchmark's flags and `--set` overrides."""
    from llamagym.config import merge
    from llamagym.runner import resolve_config

    flags = {"agent": "tictactoe", "env": "tictactoe_v3", "model": args.model, "num_envs": args.num_envs,
             "seed": args.seed, **extra}
    return resolve_config(merge(flags, overrides(args.set)))


def counting_agent_class() -> type:
    from llamagym.multiagent.game_agent import IllegalMoveError
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
    from llamagym.evaluation import evaluate
    from llamagym.models import load_model
    from llamagym.registry import get_registry
    from llamagym.runner import make_engine, seed_everything

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


def train(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    from llamagym.config import to_dict
    from llamagym.runner import train as run_training

    config = settings(args, episodes=args.episodes,
                      multiagent={"play": args.play, "opponent": args.train_opponent})
    started = time.perf_counter()
    summary = run_training(config, run_dir, overwrite=True, show_progress=True)
    return {**summary, "seconds": time.perf_counter() - started, "config": to_dict(config)}


def cell(rate: float, interval: tuple[float, float]) -> str:
    return f"{rate:6.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def table(before: dict[str, Any], after: dict[str, Any], opponent: str, mode: str) -> str:
    lines = [f"{mode} decoding against {opponent}: {before['episodes']} games per evaluation "
             f"(the agent alternates X and O)", f"{'':<18}{'before':<26}{'after':<26}"]
    for label, rate, ci in (("win rate", "win_rate", "win_ci"), ("draw rate", "draw_rate", "draw_ci"),
                            ("loss rate", "loss_rate", "loss_ci"), ("illegal-move rate", "invalid_rate", "invalid_ci")):
        lines.append(f"{label:<18}{cell(before[rate], before[ci]):<26}{cell(after[rate], after[ci]):<26}")
    lines.append(f"{'  unparsable':<18}{before['unparsable_turns']:<26}{after['unparsable_turns']:<26}")
    lines.append(f"{'  taken cell':<18}{before['illegal_cell_turns']:<26}{after['illegal_cell_turns']:<26}")
    lines.append(f"{'agent moves':<18}{before['turns']:<26}{after['turns']:<26}")
    return "\n".join(lines)


def main() -> None:
    import tempfile

    args = parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="tictactoe-selfplay-"))
    before = evaluate_against(args, adapter=None)
    training = train(args, run_dir)
    after = evaluate_against(args, adapter=str(run_dir / "adapter"))
    report = {"benchmark": "tictactoe_selfplay", "episodes": args.episodes, "eval_episodes": args.eval_episodes,
              "opponent": args.opponent, "play": args.play, "modes": args.modes.split(","), "model": args.model,
              "seed": args.seed, "before": before, "after": after, "training": training,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    output = args.output or RESULTS / f"tictactoe_selfplay-{args.episodes}ep-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    for mode in before:
        print(table(before[mode], after[mode], args.opponent, mode), end="\n\n")
    print(f"training: {args.episodes} games ({args.play}) in {training['seconds']:.0f}s, "
          f"{training['updates']} PPO updates")
    print(f"written to {output}")


if __name__ == "__main__":
    main()
