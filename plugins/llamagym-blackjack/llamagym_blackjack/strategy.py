"""Reference policies for Blackjack-v1 and the optimal (basic) strategy, solved exactly by dynamic programming
for Gymnasium's rules: infinite deck, dealer draws below 17 (stands on soft 17), no naturals bonus."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache

STICK, HIT = 0, 1
CARDS = {card: (4 / 13 if card == 10 else 1 / 13) for card in range(1, 11)}

Observation = tuple[int, int, int]
Policy = Callable[[Observation], int]


def hand_value(hard: int, has_ace: bool) -> int:
    return hard + 10 if has_ace and hard + 10 <= 21 else hard


@lru_cache(maxsize=None)
def dealer_outcomes(hard: int, has_ace: bool) -> dict[int, float]:
    """Distribution of the dealer's final total (22 stands for bust) from a hand of this hard sum."""
    value = hand_value(hard, has_ace)
    if value >= 17:
        return {min(value, 22): 1.0}
    out: dict[int, float] = {}
    for card, p in CARDS.items():
        nxt = hard + card
        sub = {22: 1.0} if nxt > 21 else dealer_outcomes(nxt, has_ace or card == 1)
        for total, q in sub.items():
            out[total] = out.get(total, 0.0) + p * q
    return out


def dealer_final(showing: int) -> dict[int, float]:
    """The dealer shows `showing` and holds one more unseen card."""
    out: dict[int, float] = {}
    for card, p in CARDS.items():
        for total, q in dealer_outcomes(showing + card, showing == 1 or card == 1).items():
            out[total] = out.get(total, 0.0) + p * q
    return out


def stick_value(player: int, showing: int) -> float:
    return sum(q * (1.0 if total == 22 or player > total else (0.0 if player == total else -1.0))
               for total, q in dealer_final(showing).items())


@lru_cache(maxsize=None)
def optimal_value(hard: int, has_ace: bool, showing: int) -> float:
    return max(stick_value(hand_value(hard, has_ace), showing), hit_value(hard, has_ace, showing))


def hit_value(hard: int, has_ace: bool, showing: int) -> float:
    return sum(p * (-1.0 if hard + card > 21 else optimal_value(hard + card, has_ace or card == 1, showing))
               for card, p in CARDS.items())


def basic_strategy(observation: Observation) -> int:
    """The optimal stick/hit action for (player sum, dealer card, usable ace)."""
    player, showing, usable = (int(x) for x in observation)
    hard, has_ace = (player - 10, True) if usable else (player, False)
    return HIT if hit_value(hard, has_ace, showing) > stick_value(player, showing) else STICK


def observation_of(hard: int, has_ace: bool, showing: int) -> Observation:
    """What Gymnasium shows for a hand: (sum with a usable ace counted as 11, dealer card, usable ace)."""
    usable = has_ace and hard + 10 <= 21
    return hand_value(hard, has_ace), showing, int(usable)


def all_observations() -> list[Observation]:
    """Every observation a player can face before going bust (sums 4-21, dealer ace-10, with or without a usable
    ace where one is possible)."""
    seen = {observation_of(hard, has_ace, showing) for showing in CARDS for hard in range(2, 22)
            for has_ace in (False, True) if hard >= (2 if has_ace else 4)}
    return sorted(seen)


def policy_return(hit_probability: Callable[[Observation], float]) -> float:
    """The exact expected return of a policy (the probability it hits in each observation) over Gymnasium's random
    deals: no sampling noise, so two policies compare exactly."""

    @lru_cache(maxsize=None)
    def value(hard: int, has_ace: bool, showing: int) -> float:
        p_hit = hit_probability(observation_of(hard, has_ace, showing))
        stick = stick_value(hand_value(hard, has_ace), showing)
        if p_hit == 0:
            return stick
        hit = sum(p * (-1.0 if hard + card > 21 else value(hard + card, has_ace or card == 1, showing))
                  for card, p in CARDS.items())
        return (1 - p_hit) * stick + p_hit * hit

    return sum(p1 * p2 * pd * value(c1 + c2, c1 == 1 or c2 == 1, showing)
               for c1, p1 in CARDS.items() for c2, p2 in CARDS.items() for showing, pd in CARDS.items())


def always_stick(observation: Observation) -> int:
    return STICK


def stick_on_17(observation: Observation) -> int:
    return STICK if int(observation[0]) >= 17 else HIT


def random_policy(rng: random.Random | None = None) -> Policy:
    rng = rng or random.Random(0)
    return lambda observation: rng.randrange(2)


REFERENCE_POLICIES: dict[str, Callable[[], Policy]] = {
    "random": random_policy, "always stick": lambda: always_stick, "stick on 17+": lambda: stick_on_17,
    "basic strategy": lambda: basic_strategy,
}

