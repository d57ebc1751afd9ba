"""Hook implementations: the game agents, the PettingZoo envs and the scripted opponents. No heavy imports here,
so listing plugins stays fast."""

from __future__ import annotations

from pathlib import Path

from llamagym import hookimpl

PRESETS = Path(__file__).with_name("presets")
PACKAGE = "llamagym_pettingzoo"

AGENTS = {
    "tictactoe": ("tictactoe:TicTacToeAgent", "numbered 3x3 board, answers the number of a free cell"),
    "connect_four": ("connect_four:ConnectFourAgent", "6x7 board drawn row by row, answers a column 1-7"),
    "rps": ("rps:RockPaperScissorsAgent", "sees the opponent's last throw, answers rock, paper or scissors"),
    "leduc_holdem": ("poker:LeducHoldemAgent", "reads its card, the public card and the pot; calls, raises, "
                                                "folds or checks"),
    "texas_holdem": ("poker:TexasHoldemAgent", "reads the cards it sees and the raises so far; calls, raises, "
                                                "folds or checks"),
}

ENVS = {
    "tictactoe_v3": ("pettingzoo.classic.tictactoe.tictactoe:env", "aec", "PettingZoo tic-tac-toe (2 players)"),
    "connect_four_v3": ("pettingzoo.classic.connect_four.connect_four:env", "aec",
                        "PettingZoo connect four (2 players)"),
    "rps_v2": ("pettingzoo.classic.rps.rps:parallel_env", "parallel",
               "PettingZoo rock paper scissors, 15 simultaneous rounds (2 players)"),
    "leduc_holdem_v4": ("pettingzoo.classic.rlcard_envs.leduc_holdem:env", "aec",
                        "PettingZoo Leduc hold'em, a six-card poker (2 players)"),
    "texas_holdem_v4": ("pettingzoo.classic.rlcard_envs.texas_holdem:env", "aec",
                        "PettingZoo limit Texas hold'em (2 players)"),
}

OPPONENTS = {
    "heuristic": [("opponents:tictactoe_heuristic", ("tictactoe_v3",),
                   "wins if it can, else blocks, else takes the centre, a corner, any cell"),
                  ("opponents:connect_four_heuristic", ("connect_four_v3",),
                   "wins if it can, else blocks, else plays the most central open column")],
    "perfect": [("perfect:perfect_move", ("tictactoe_v3",), "exhaustive minimax: never loses, wins as soon as "
                                                               "it can")],
    "rock": [("opponents:always_rock", ("rps_v2",), "always throws rock")],
    "calling_station": [("opponents:calling_station", ("leduc_holdem_v4", "texas_holdem_v4"),
                         "never raises or folds: calls, or checks when nothing is owed")],
}


@hookimpl
def llamagym_register_agents(register):
    for name, (reference, description) in AGENTS.items():
        register(name, f"{PACKAGE}.{reference}", description=description, preset=str(PRESETS / f"{name}.toml"))


@hookimpl
def llamagym_register_envs(register):
    for env_id, (entry_point, kind, description) in ENVS.items():
        register(env_id, entry_point, kind=kind, description=description)


@hookimpl
def llamagym_register_opponents(register):
    for name, variants in OPPONENTS.items():
        for reference, envs, description in variants:
            register(name, f"{PACKAGE}.{reference}", envs=envs, description=description)
