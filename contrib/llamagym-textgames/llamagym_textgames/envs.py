"""FrozenLake and Taxi with text observations: the wrapped env's own state, described in words a language model
can act on (where you are, what lies next to you, where to go)."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import gymnasium
from gymnasium import spaces

FROZENLAKE_MOVES = ("left", "down", "right", "up")  # Gymnasium's action order
TAXI_ACTIONS = ("south", "north", "east", "west", "pickup", "dropoff")
TILES = {"S": "the start", "F": "frozen ice", "H": "a hole", "G": "the goal"}
TAXI_STOPS = "RGYB"
MAX_TEXT = 2000  # characters; a description longer than this is outside the observation space


class TextObservation(gymnasium.ObservationWrapper, gymnasium.utils.RecordConstructorArgs):
    """Replaces the integer state with `describe(unwrapped_env, state)`.

    It records its constructor's arguments, as Gymnasium's own wrappers do, so that `env.spec` can describe the
    wrapped env and `gymnasium.make(env.spec)` (which `check_env` uses for render modes) recreates it."""

    def __init__(self, env: gymnasium.Env, describe: Callable[[Any, int], str]):
        gymnasium.utils.RecordConstructorArgs.__init__(self, describe=describe)
        gymnasium.ObservationWrapper.__init__(self, env)
        self.describe = describe
        # every character the descriptions use (the map's newlines, "@", punctuation), and room for the longest
        self.observation_space = spaces.Text(max_length=MAX_TEXT, charset=string.printable)

    def observation(self, observation: Any) -> str:
        return self.describe(self.env.unwrapped, int(observation))


def frozenlake_text(lake: Any, state: int) -> str:
    """The map with `@` for the player, its row and column, and what each move leads onto."""
    rows = [[tile.decode() for tile in row] for row in lake.desc]
    n_rows, n_cols = len(rows), len(rows[0])
    row, col = divmod(state, n_cols)
    grid = "\n".join("".join("@" if (r, c) == (row, col) else tile for c, tile in enumerate(line))
                     for r, line in enumerate(rows))
    neighbours = {"left": (row, col - 1), "down": (row + 1, col), "right": (row, col + 1), "up": (row - 1, col)}
    sights = [f"{move}: {TILES[rows[r][c]] if 0 <= r < n_rows and 0 <= c < n_cols else 'the edge'}"
              for move, (r, c) in neighbours.items()]
    goal = next((r, c) for r, line in enumerate(rows) for c, tile in enumerate(line) if tile == "G")
    return (f"Map (S start, F ice, H hole, G goal, @ you):\n{grid}\n"
            f"You are at row {row + 1}, column {col + 1}; the goal is at row {goal[0] + 1}, column {goal[1] + 1}. "
            f"Next to you: {'; '.join(sights)}. Which way: left, down, right or up?")


def taxi_text(taxi: Any, state: int) -> str:
    """Where the taxi, the passenger and the destination are, and which moves the walls allow."""
    taxi_row, taxi_col, passenger, destination = taxi.decode(state)

    def place(index: int) -> str:
        r, c = taxi.locs[index]
        return f"{TAXI_STOPS[index]} (row {r + 1}, column {c + 1})"

    waiting = "is in your taxi" if passenger == len(taxi.locs) else f"waits at {place(passenger)}"
    free = [TAXI_ACTIONS[a] for a in range(4) if taxi.P[state][a][0][1] != state]
    return (f"You drive a taxi at row {taxi_row + 1}, column {taxi_col + 1} of a 5x5 town (row 1 is north). "
            f"The passenger {waiting} and wants to go to {place(destination)}. Open roads: {', '.join(free)}. "
            f"Which action: south, north, east, west, pickup or dropoff?")


def taxi_id() -> str:
    """Gymnasium's current Taxi id (v4 from Gymnasium 1.3, v3 before)."""
    return "Taxi-v4" if "Taxi-v4" in gymnasium.registry else "Taxi-v3"


def make_frozenlake(**kwargs: Any) -> gymnasium.Env:
    return TextObservation(gymnasium.make("FrozenLake-v1", **kwargs), frozenlake_text)


def make_taxi(**kwargs: Any) -> gymnasium.Env:
    return TextObservation(gymnasium.make(taxi_id(), **kwargs), taxi_text)
