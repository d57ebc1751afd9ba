"""How many episodes does Blackjack's −0.06 take, for a learner that is given the state exactly? A bar for issue 16's
target that does not depend on the model: Monte-Carlo control (the textbook tabular method, Sutton & Barto 5.4)
plays N episodes of Gymnasium's Blackjack, updating its policy every `--batch` episodes as PPO does, and its greedy
policy is then scored exactly (`strategy.policy_return`). Repeated over many seeds, it gives the share of runs that
reach −0.06 after N episodes, and so the chance that 5 runs of 5 do.

Two learners, both far better placed than a language model starting from its prompt:

- `tabular`: one action value per observation and action (280 × 2), ε-greedy exploration.
- `pooled`: one value per group of observations that basic strategy treats alike (hard ≤ 11, 12, 13–16, 17+ and
  soft ≤ 17, 18, 19+, each against a dealer's 2–6 or 7–ace): the best generalisation a model could discover from the
  prompt's words, handed over for free.

    python benchmarks/blackjack_sample_bound.py
    python benchmarks/blackjack_sample_bound.py --episodes 3072 12288 --trials 100

Pure Python, no model: about a minute. Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable

from common import print_table, write_json
from llamagym_blackjack.strategy import HIT, STICK, Observation, all_observations, policy_return

TARGET = -0.06
DECK = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10]  # Gymnasium's infinite deck


def hand(cards: list[int]) -> tuple[int, bool]:
    """(total, usable ace) as Gymnasium counts a hand."""
    total = sum(cards)
    usable = 1 in cards and total + 10 <= 21
    return (total + 10 if usable else total), usable


def play(choose: Callable[[Observation], int], rng: random.Random) -> tuple[list[tuple[Observation, int]], float]:
    """One episode of Blackjack-v1 (natural=False, sab=False): the (observation, action) pairs and the reward."""
    dealer = [rng.choice(DECK), rng.choice(DECK)]
    player = [rng.choice(DECK), rng.choice(DECK)]
    steps = []
    while True:
        total, usable = hand(player)
        observation = (total, dealer[0], int(usable))
        action = choose(observation)
        steps.append((observation, action))
        if action == STICK:
            break
        player.append(rng.choice(DECK))
        if hand(player)[0] > 21:
            return steps, -1.0
    while hand(dealer)[0] < 17:
        dealer.append(rng.choice(DECK))
    mine, theirs = hand(player)[0], hand(dealer)[0]
    return steps, 1.0 if theirs > 21 or mine > theirs else (0.0 if mine == theirs else -1.0)


def exact(observation: Observation) -> Observation:
    return observation


def pooled(observation: Observation) -> tuple[int, int, int]:
    """The group basic strategy treats alike: the player's band, soft or hard, and the dealer's often/seldom bust."""
    total, showing, usable = observation
    bands = (17, 18, 99) if usable else (11, 12, 16, 99)
    band = next(i for i, top in enumerate(bands) if total <= top)
    return band, usable, int(2 <= showing <= 6)


def monte_carlo_control(key: Callable[[Observation], tuple], episodes: int, batch: int, epsilon: float,
                        seed: int) -> float:
    """Every-visit Monte-Carlo control with ε-greedy behaviour, its greedy policy frozen within each batch of
    episodes (an update every `batch`, like PPO's); returns the exact return of the final greedy policy."""
    rng = random.Random(seed)
    sums: dict[tuple, list[float]] = {}
    counts: dict[tuple, list[int]] = {}

    def greedy(observation: Observation) -> int:
        s, n = sums.get(key(observation)), counts.get(key(observation))
        if not n or 0 in n:  # an action never tried: try it
            return HIT if not n or n[HIT] == 0 else STICK
        return HIT if s[HIT] / n[HIT] > s[STICK] / n[STICK] else STICK

    for start in range(0, episodes, batch):
        frozen = {o: greedy(o) for o in all_observations()}
        played = [play(lambda o: rng.choice((STICK, HIT)) if rng.random() < epsilon else frozen[o], rng)
                  for _ in range(min(batch, episodes - start))]
        for steps, reward in played:
            for observation, action in steps:
                k = key(observation)
                sums.setdefault(k, [0.0, 0.0])[action] += reward
                counts.setdefault(k, [0, 0])[action] += 1
    final = {o: greedy(o) for o in all_observations()}
    return policy_return(lambda o: float(final[o]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, nargs="+", default=[1024, 3072, 6144, 12288, 24576])
    parser.add_argument("--trials", type=int, default=40, help="seeds per learner and episode count")
    parser.add_argument("--batch", type=int, default=128, help="episodes between policy updates")
    parser.add_argument("--epsilon", type=float, default=0.3, help="share of random actions while learning")
    parser.add_argument("--out", help="JSON path [default: benchmarks/results/blackjack_sample_bound.json]")
    args = parser.parse_args()
    rows = []
    for name, key in (("tabular", exact), ("pooled", pooled)):
        for episodes in args.episodes:
            returns = [monte_carlo_control(key, episodes, args.batch, args.epsilon, seed)
                       for seed in range(args.trials)]
            share = sum(r >= TARGET for r in returns) / len(returns)
            rows.append({"learner": name, "episodes": episodes, "mean_return": statistics.fmean(returns),
                         "worst_return": min(returns), "share_reaching_target": share, "p_5_of_5": share ** 5,
                         "returns": returns})
            print(f"{name} {episodes}: mean {rows[-1]['mean_return']:+.4f}, {share:.0%} reach {TARGET}", flush=True)
    print_table(rows, ["learner", "episodes", "mean_return", "worst_return", "share_reaching_target", "p_5_of_5"])
    path = write_json("blackjack_sample_bound", {"rows": rows, "target": TARGET, "args": vars(args)}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
