"""The perfect tic-tac-toe player (the tic-tac-toe agent's expert): it never loses, takes a win at once, blocks,
and its demonstrations read back as its moves."""

import random

import pytest

from llamagym.rollout.games.players import random_move
from llamagym.rollout.games.tables import AECTable
from llamagym.plugins.manager import build_plugin_manager
from llamagym.plugins.registry import Registry
from llamagym_pettingzoo import plugin
from llamagym_pettingzoo.opponents import tictactoe_heuristic
from llamagym_pettingzoo.perfect import negamax, perfect_move
from llamagym_pettingzoo.tictactoe import TicTacToeAgent, cell_to_action


@pytest.fixture(scope="module")
def make_env():
    pm = build_plugin_manager(load_entry_points=False)
    pm.register(plugin, name="pettingzoo")
    return Registry(pm).env("tictactoe_v3").make


def play_games(make_env, first, second, games):
    """(wins, draws, losses) of `first` against `second`, `first` taking X in even games and O in odd ones."""
    rng, score = random.Random(0), [0, 0, 0]
    table = AECTable(make_env())
    for game in range(games):
        table.reset(game)
        me, total = table.seats[game % 2], 0.0
        while True:
            waiting, rewards = table.advance()
            total += rewards.get(me, 0.0)
            if not waiting:
                break
            (seat, view), = waiting.items()
            total += table.step({seat: (first if seat == me else second)(view, rng)}).get(me, 0.0)
        score[0 if total > 0 else 1 if total == 0 else 2] += 1
    return score


def position(make_env, cells):
    """The view of the seat to move after the given cells (1-9, X first) were played."""
    table = AECTable(make_env())
    table.reset(0)
    for cell in cells:
        (seat, _), = table.advance()[0].items()
        table.step({seat: cell_to_action(cell)})
    (_, view), = table.advance()[0].items()
    return view


def test_the_empty_board_is_a_draw():
    assert negamax(frozenset(), frozenset()) == 0


def test_perfect_never_loses_and_beats_random_most_of_the_time(make_env):
    wins, draws, losses = play_games(make_env, perfect_move, random_move, 200)
    assert losses == 0 and wins >= 170
    assert play_games(make_env, perfect_move, tictactoe_heuristic, 20)[2] == 0
    assert play_games(make_env, perfect_move, perfect_move, 4) == [0, 4, 0]


def test_perfect_wins_at_once_and_blocks(make_env):
    # X holds 1 and 2, O holds 4 and 5: X wins with 3 (blocking 6 would also be legal)
    assert perfect_move(position(make_env, [1, 4, 2, 5])) == cell_to_action(3)
    # X holds 1 and 2, O holds 5: O must block 3
    assert perfect_move(position(make_env, [1, 5, 2])) == cell_to_action(3)


def test_the_agent_demonstrates_the_perfect_move_in_words_it_reads_back(make_env):
    agent = object.__new__(TicTacToeAgent)
    view = position(make_env, [1, 4, 2, 5])
    move = agent.expert_action(view)
    assert agent.format_action(move) == " 3"
    assert agent.extract_action(agent.response_prefix + agent.format_action(move), view) == move


def test_perfect_is_a_scripted_opponent_for_tictactoe():
    from llamagym.rollout.games.opponents import find_scripted

    pm = build_plugin_manager(load_entry_points=False)
    pm.register(plugin, name="pettingzoo")
    assert find_scripted(pm, "perfect", "tictactoe_v3").load() is perfect_move
