"""Training throughput of `llamagym run` on Blackjack-v1 with 1, 2, ... data-parallel processes for the same total
number of episodes and the same global batch (`--batch-size` episodes per update, split over the processes), so
every setting makes the same updates and only the speed differs. Each process gets one GPU where there are GPUs,
else a share of the CPU cores. Each setting runs `python -m llamagym run --num-processes N` and reads its summary:
wall time after model loading, episodes per second, and the speed-up over one process.

    python benchmarks/data_parallel.py --processes 1 2 4 8 --episodes 1024          # default model
    python benchmarks/data_parallel.py --processes 1 2 --episodes 16 --model PATH --device cpu
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, print_table, write_json


def run(processes: int, args: argparse.Namespace, out: Path) -> dict:
    if args.batch_size % processes:
        raise SystemExit(f"--batch-size {args.batch_size} does not split over {processes} processes")
    command = [sys.executable, "-m", "llamagym", "run", "--agent", "blackjack", "--env", "Blackjack-v1",
               "--model", args.model, "--episodes", str(args.episodes), "--num-envs", str(args.num_envs),
               "--batch-size", str(args.batch_size // processes), "--device", args.device, "--seed", str(args.seed),
               "--checkpoint-every", "0", "-o", str(out), "--overwrite", "-q", "--num-processes", str(processes)]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    total = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"processes": processes, "episodes": summary["episodes"], "updates": summary["updates"],
            "train_s": summary["wall_time_s"], "total_s": total,
            "episodes_per_s": summary["episodes"] / summary["wall_time_s"],
            "ppo_s_per_update": sum(m.get("time/ppo_s", 0.0) for m in metrics) / max(len(metrics), 1),
            "last_100_return": summary["last_100_return"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--episodes", type=int, default=512, help="total episodes of each run")
    parser.add_argument("--num-envs", type=int, default=16, help="environment copies per process")
    parser.add_argument("--batch-size", type=int, default=32, help="episodes per update, over all processes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/data_parallel.json]")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="llamagym-dp-bench-") as scratch:
        for processes in args.processes:
            rows.append(run(processes, args, Path(scratch) / f"run-{processes}"))
    base = next((r for r in rows if r["processes"] == 1), rows[0])
    for row in rows:
        row["speedup"] = row["episodes_per_s"] / base["episodes_per_s"]
    print_table(rows, ["processes", "episodes", "updates", "train_s", "total_s", "episodes_per_s", "speedup",
                       "ppo_s_per_update", "last_100_return"])
    out = write_json("data_parallel", {"machine": machine(), "args": vars(args), "rows": rows,
                                       "time": time.strftime("%Y-%m-%d %H:%M:%S")}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
