"""What has the Blackjack agent learnt? Ask it about every observation (280 of them), draw its policy as a chart
(H = hit, s = stick, . = no valid answer) and give the exact expected return of that policy: no evaluation
noise, so it can compare checkpoints a few updates apart.

    python benchmarks/blackjack_policy_map.py                                  # the untrained agent
    python benchmarks/blackjack_policy_map.py runs/blackjack/adapter --samples 16
    python benchmarks/blackjack_policy_map.py runs/blackjack/checkpoints/update-000010-ep-000000640
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym

from common import machine, print_table, timer, write_json
from llamagym.config import to_dict
from llamagym.run.setup import build_agent, config_from_run, resolve_config
from llamagym_blackjack.scoring import hit_probabilities  # the plugin's own, as `llamagym run` scores it
from llamagym_blackjack.strategy import HIT, all_observations, basic_strategy, policy_return, stick_on_17


def ask(agent, greedy: bool) -> dict[tuple, tuple[int, bool]]:
    """One answer per observation: (action taken, whether the response named it)."""
    agent.generation.do_sample = not greedy
    states = all_observations()
    actions = agent.act_batch(dict(enumerate(states)))
    answers = {}
    for slot, state in enumerate(states):
        episode = agent.end_episode(slot)
        answers[state] = (actions[slot], episode.turns[-1].valid)
    return answers


def hit_rates(agent, samples: int) -> tuple[dict[tuple, float], float]:
    """P(hit | observation) under sampling, estimated from `samples` answers each; and the invalid-answer rate."""
    hits = dict.fromkeys(all_observations(), 0)
    invalid = 0
    for _ in range(samples):
        for state, (action, valid) in ask(agent, greedy=False).items():
            hits[state] += action == HIT
            invalid += not valid
    return {s: h / samples for s, h in hits.items()}, invalid / (samples * len(hits))


def chart(policy) -> str:
    """Rows: the player's sum (hard totals, then soft ones); columns: the dealer's card (A, 2-10)."""
    lines = ["       A 2 3 4 5 6 7 8 9 T"]
    for usable in (0, 1):
        for player in range(12 if usable else 4, 22):
            cells = " ".join(policy((player, showing, usable)) for showing in range(1, 11))
            lines.append(f"{'soft' if usable else 'hard'} {player:2d} {cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter", nargs="?", help="adapter or checkpoint directory [default: untrained]")
    parser.add_argument("--model", default="default")
    parser.add_argument("--samples", type=int, default=8, help="sampled answers per observation (0: greedy only)")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/blackjack_policy_map.json]")
    args = parser.parse_args()

    where = Path(args.adapter).resolve() if args.adapter else None  # the run's adapter/ or one of its checkpoints
    saved = where and (config_from_run(where) or config_from_run(where.parents[1]))
    config = saved or resolve_config({"agent": "blackjack", "env": "Blackjack-v1", "model": args.model})
    agent = build_agent(config, adapter=args.adapter)
    agent.action_space = gym.make("Blackjack-v1").action_space
    with timer() as t:
        greedy = ask(agent, greedy=True)
        sampled, invalid_rate = hit_rates(agent, args.samples) if args.samples else ({}, 0.0)
        exact = hit_probabilities(agent)  # None with free-text answers

    symbol = {True: "H", False: "s"}
    print(chart(lambda s: symbol[greedy[s][0] == HIT] if greedy[s][1] else "."))
    rows = [
        {"policy": "basic strategy", "exact_return": policy_return(lambda s: float(basic_strategy(s)))},
        {"policy": "stick on 17+", "exact_return": policy_return(lambda s: float(stick_on_17(s)))},
        {"policy": "always stick", "exact_return": policy_return(lambda s: 0.0)},
        {"policy": "agent, greedy", "exact_return": policy_return(lambda s: float(greedy[s][0] == HIT)),
         "invalid_rate": sum(not v for _, v in greedy.values()) / len(greedy),
         "agrees_with_basic": sum((a == HIT) == (basic_strategy(s) == HIT) for s, (a, _) in greedy.items())
         / len(greedy)},
    ]
    if exact is not None:
        rows.append({"policy": "agent, sampling (exact)", "exact_return": policy_return(exact.get),
                     "invalid_rate": 0.0})
    if args.samples:
        rows.append({"policy": f"agent, sampled ({args.samples}/state)", "exact_return": policy_return(sampled.get),
                     "invalid_rate": invalid_rate})
    print(f"\n{args.adapter or 'untrained'}: {t['s']:.0f} s")
    print_table(rows, ["policy", "exact_return", "invalid_rate", "agrees_with_basic"])
    out = write_json("blackjack_policy_map", {
        "machine": machine(), "adapter": args.adapter, "config": to_dict(config), "rows": rows,
        "greedy_hits": sorted(list(s) for s, (a, _) in greedy.items() if a == HIT),
        "sampled_hit_rate": [[*s, p] for s, p in sampled.items()],
        "exact_hit_probability": [[*s, p] for s, p in (exact or {}).items()],
        "time": time.strftime("%Y-%m-%d %H:%M:%S")}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
