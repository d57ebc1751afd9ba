"""Does the Blackjack preset learn on every seed? Run `llamagym run --agent blackjack --env Blackjack-v1` (the
preset, PPO from fresh adapters, no warm start) once per seed, exactly as a user runs it, and report every seed:
the exact return of the greedy policy after training (`llamagym run`'s own policy score: the agent's answer in all
280 observations, valued by dynamic programming), its agreement with basic strategy, the training time (the run's
own clock: rollouts and updates, not model loading or scoring) and the wall time of the whole command.

    python benchmarks/blackjack_seeds.py --seeds 101 102 103 104 105
    python benchmarks/blackjack_seeds.py --seeds 7 -- --vf-coef 0.5          # flags for `llamagym run`

Run it alone on the machine: a second process on the cores makes the times meaningless. Each seed's run directory
is kept under --output; a seed whose summary.json already exists there is read, not run again (so a series can be
continued). Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, machine, print_table, write_json

TARGET = -0.06  # issue 16: the greedy return every seed must reach
BUDGET_S = 15 * 60  # within 15 minutes of training
BASIC_STRATEGY = -0.0466


def llamagym() -> str:
    return str(Path(sys.executable).with_name("llamagym"))


def run_seed(seed: int, output: Path, flags: list[str]) -> dict:
    """Train one seed (unless its summary is there already) and read its result."""
    run_dir = output / f"seed-{seed}"
    summary_path = run_dir / "summary.json"
    wall = None
    if not summary_path.exists():
        started = time.perf_counter()
        command = [llamagym(), "run", "--agent", "blackjack", "--env", "Blackjack-v1", "--seed", str(seed), "-q",
                   "--overwrite", "-o", str(run_dir), *flags]
        subprocess.run(command, check=True)
        wall = time.perf_counter() - started
    summary = json.loads(summary_path.read_text())
    after = summary["policy_score"]["after"]
    agree = re.search(r"(\d+)%", after["detail"] or "")
    return {"seed": seed, "return": after["expected_return"],
            "before": summary["policy_score"]["before"]["expected_return"],
            "sampled_return": after.get("sampled_return"),
            "agrees_pct": int(agree.group(1)) if agree else None, "episodes": summary["episodes"],
            "updates": summary["updates"], "train_min": summary["wall_time_s"] / 60,
            "wall_min": None if wall is None else wall / 60, "met": after["expected_return"] >= TARGET
            and summary["wall_time_s"] <= BUDGET_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark-blackjack-seeds"))
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/blackjack_seeds.json]")
    parser.add_argument("flags", nargs="*", help="flags passed on to `llamagym run` (after --)")
    args = parser.parse_args()
    rows = [run_seed(seed, args.output, args.flags) for seed in args.seeds]
    print_table(rows, ["seed", "before", "return", "sampled_return", "agrees_pct", "train_min", "wall_min", "met"])
    returns = [r["return"] for r in rows]
    totals = {"mean_return": statistics.fmean(returns), "worst_return": min(returns),
              "seeds_met": sum(r["met"] for r in rows), "seeds": len(rows), "target": TARGET,
              "budget_min": BUDGET_S / 60, "basic_strategy": BASIC_STRATEGY}
    print(f"mean {totals['mean_return']:+.4f}, worst {totals['worst_return']:+.4f}; "
          f"{totals['seeds_met']} of {len(rows)} seeds reached {TARGET} within {BUDGET_S // 60} minutes")
    path = write_json("blackjack_seeds", {"rows": rows, "totals": totals, "flags": args.flags, "machine": machine()},
                      args.out)
    print(f"wrote {path.relative_to(RESULTS.parent.parent) if path.is_relative_to(RESULTS.parent.parent) else path}")


if __name__ == "__main__":
    main()
