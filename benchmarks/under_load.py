"""One PPO update of the Blackjack preset, quiet and with other work on the machine: a busy loop holding one core,
and a second `llamagym run` of the preset. Each loaded case is timed with torch's threads fixed at the machine's
core count (what every run did before issue 16) and with the thread balancer `llamagym run` now uses (the cores
other processes keep busy are left to them). The figure that matters is the slowdown: loaded time / quiet time.

    python benchmarks/under_load.py                        # embedded default model; ~6 minutes on 2 cores
    python benchmarks/under_load.py --skip-second-run      # the busy loop only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

from common import machine, print_table, write_json
from throughput import engine_loop, ppo_rate, preset_settings
from llamagym.plugins.manager import build_plugin_manager
from llamagym.policy.models import load_model
from llamagym.run.setup import resolve_config
from llamagym.run.threads import ThreadBalancer, usable_cores
from llamagym_blackjack.agent import BlackjackAgent

BUSY_LOOP = "while True: pass"


def start(command: list[str], env: dict[str, str] | None = None, settle: float = 3.0) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})})
    time.sleep(settle)
    return process


def timed_update(agent, episodes, threads: int | str) -> dict[str, float]:
    """One update with `threads` fixed, or "balanced": the balancer's choice after a look at the machine."""
    if threads == "balanced":
        balancer = ThreadBalancer()
        time.sleep(2.0)  # the window it looks at: the competing work's steady state
        threads = balancer.rebalance()
    else:
        torch.set_num_threads(int(threads))
    row = ppo_rate(agent, episodes)
    return {"threads": threads, "seconds": row["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--episodes", type=int, default=128, help="episodes in the timed update")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-second-run", action="store_true")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/under_load.json]")
    args = parser.parse_args()
    for name in ("LLAMAGYM_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.pop(name, None)  # the balancer must be free to choose
    cores = usable_cores()
    torch.manual_seed(args.seed)
    config = resolve_config({"agent": "blackjack", "env": "Blackjack-v1"})
    policy, tokenizer = load_model(args.model, config.lora)
    generation, ppo = preset_settings()
    agent = BlackjackAgent(policy, tokenizer, "auto", generation, ppo, plugin_manager=build_plugin_manager(
        load_entry_points=False), precision="auto", seed=args.seed)
    episodes = engine_loop(agent, args.episodes, args.seed, 16)[1]
    ppo_rate(agent, episodes[:16])  # warm-up: first-call allocations out of the timings

    rows = [{"load": "quiet", **timed_update(agent, episodes, cores)}]
    print(f"  quiet: {rows[-1]['seconds']:.1f}s", flush=True)
    competitors = [("a busy loop on one core", [sys.executable, "-c", BUSY_LOOP], None, 3.0)]
    if not args.skip_second_run:
        scratch = tempfile.mkdtemp()
        competitors.append(("a second llamagym run (threads fixed at the cores)",
                            [os.path.join(os.path.dirname(sys.executable), "llamagym"), "run", "--agent",
                             "blackjack", "--env", "Blackjack-v1", "--model", args.model, "--episodes", "100000",
                             "-o", os.path.join(scratch, "run"), "-q"], {"LLAMAGYM_NUM_THREADS": str(cores)}, 45.0))
    for name, command, env, settle in competitors:
        process = start(command, env, settle)
        try:
            for threads in (cores, "balanced"):
                row = {"load": name, **timed_update(agent, episodes, threads)}
                row["policy"] = "fixed" if threads == cores else "balanced"
                rows.append(row)
                print(f"  {name}, {row['policy']} ({row['threads']} threads): {row['seconds']:.1f}s", flush=True)
        finally:
            process.kill()
            process.wait()
    quiet = rows[0]["seconds"]
    for row in rows:
        row["slowdown"] = row["seconds"] / quiet
    print()
    print_table(rows, ["load", "policy", "threads", "seconds", "slowdown"])
    out = write_json("under_load", {"machine": machine(), "args": vars(args), "cores": cores, "rows": rows,
                                    "time": time.strftime("%Y-%m-%d %H:%M:%S")}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
