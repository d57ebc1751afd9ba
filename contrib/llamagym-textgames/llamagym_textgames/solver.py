"""Reference policy: the shortest action sequence to a rewarded end, by breadth-first search over the
transition table of a deterministic toy-text env (FrozenLake without slipping, Taxi). What a perfect agent
scores, to compare a trained one against."""

from __future__ import annotations

from collections import deque
from typing import Any


def shortest_plan(unwrapped: Any, state: int) -> list[int]:
    """Actions from `state` to the first terminal transition with a positive reward ([] if none is reachable)."""
    parents: dict[int, tuple[int, int]] = {}
    queue, seen = deque([state]), {state}
    while queue:
        current = queue.popleft()
        for action, outcomes in unwrapped.P[current].items():
            _, following, reward, terminated = outcomes[0]
            if terminated and reward > 0:
                plan = [action]
                while current != state:
                    current, previous_action = parents[current]
                    plan.append(previous_action)
                return plan[::-1]
            if not terminated and following not in seen:
                seen.add(following)
                parents[following] = (current, action)
                queue.append(following)
    return []


def play_optimally(env: Any, seed: int) -> float:
    """Return of one episode played by the shortest plan."""
    env.reset(seed=seed)
    total = 0.0
    for action in shortest_plan(env.unwrapped, int(env.unwrapped.s)):
        _, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            break
    return total
