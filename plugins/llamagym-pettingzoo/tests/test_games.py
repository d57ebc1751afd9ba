"""The PettingZoo plugin without a model: every env passes PettingZoo's API tests, the boards render as the
model will read them (checked against the envs' own state), moves parse to the right action ids, and the
scripted opponents play as documented."""

import random

import pytest

from llamagym import ActionParseError
from llamagym.rollout.games.opponents import find_scripted, scripted_opponents
from llamagym.rollout.games.players import random_move
from llamagym.rollout.games.tables import AECTable
from llamagym.plugins.manager import build_plugin_manager
from llamagym.plugins.registry import Registry
from llamagym_pettingzoo import plugin
from llamagym_pettingzoo.connect_four import ConnectFourAgent
from llamagym_pettingzoo.poker import LeducHoldemAgent, TexasHoldemAgent, leduc_state, texas_state
from llamagym_pettingzoo.rps import RockPaperScissorsAgent
from llamagym_pettingzoo.tictactoe import TicTacToeAgent, action_to_cell, cell_to_action


@pytest.fixture(scope="module")
def registry():
    pm = build_plugin_manager(load_entry_points=False)
    pm.register(plugin, name="pettingzoo")
    return Registry(pm)


@pytest.mark.parametrize("env_id", sorted(plugin.ENVS))
def test_every_env_passes_the_pettingzoo_api_tests(registry, env_id):
    from pettingzoo.test import api_test, parallel_api_test
    from pettingzoo.utils.conversions import parallel_to_aec

    spec = registry.env(env_id)
    if spec.kind == "parallel":
        parallel_api_test(spec.make(), num_cycles=100)
        api_test(parallel_to_aec(spec.make()), num_cycles=100)
    else:
        assert spec.kind == "aec"
        api_test(spec.make(), num_cycles=100)


def test_every_agent_and_env_is_registered(registry):
    assert set(registry.agents) == {"tictactoe", "connect_four", "rps", "leduc_holdem", "texas_holdem"}
    assert {e: registry.env(e).kind for e in plugin.ENVS} == {
        "tictactoe_v3": "aec", "connect_four_v3": "aec", "rps_v2": "parallel", "leduc_holdem_v4": "aec",
        "texas_holdem_v4": "aec"}
    for name in registry.agents:
        assert registry.agent(name).load()  # the lazy reference imports


def render(agent_class, observation):
    """The agent's text for an observation, without a model (the methods need no weights)."""
    return agent_class.format_observation(object.__new__(agent_class), observation)


def parse(agent_class, response, observation):
    return agent_class.parse_move(object.__new__(agent_class), response, observation)


def play(table, moves):
    for move in moves:
        waiting, _ = table.advance()
        (seat, view), = waiting.items()
        table.step({seat: move})
    waiting, _ = table.advance()
    return next(iter(waiting.values()))


def test_tictactoe_board_matches_the_env(registry):
    table = AECTable(registry.env("tictactoe_v3").make())
    table.reset(0)
    # X takes cell 2 (top middle), O cell 9 (bottom right), X cell 4 (middle left)
    view = play(table, [cell_to_action(2), cell_to_action(9), cell_to_action(4)])
    assert view.agent_id == "player_2"
    assert render(TicTacToeAgent, view) == ("You are O.\n1|X|3\nX|5|6\n7|8|O\n"
                                            "Free cells: 1, 3, 5, 6, 7, 8. Your move?")
    squares = table.env.unwrapped.board.squares  # PettingZoo's own board, numbered column by column
    assert [squares[cell_to_action(c)] for c in (2, 4, 9)] == [1, 1, 2]
    assert parse(TicTacToeAgent, "My move: cell 5.", view) == cell_to_action(5) == 4
    assert [action_to_cell(cell_to_action(c)) for c in range(1, 10)] == list(range(1, 10))
    with pytest.raises(ActionParseError):
        parse(TicTacToeAgent, "My move: cell ten", view)


def test_tictactoe_names_the_cells_that_win_and_those_to_block(registry):
    table = AECTable(registry.env("tictactoe_v3").make())
    table.reset(0)
    # X: 1, 2 (threatens 3); O: 5, 9 (threatens 1, taken, so nothing); X to move
    view = play(table, [cell_to_action(c) for c in (1, 5, 2, 9)])
    assert render(TicTacToeAgent, view) == ("You are X.\nX|X|3\n4|O|6\n7|8|O\nYou win at: 3.\n"
                                            "Free cells: 3, 4, 6, 7, 8. Your move?")
    # X plays 4 (threatens 7 as well); O to move must see both cells it has to block, and no win of its own
    table.step({view.agent_id: cell_to_action(4)})
    waiting, _ = table.advance()
    view = next(iter(waiting.values()))
    assert render(TicTacToeAgent, view).splitlines()[4:6] == ["X wins next at: 3, 7.", "Free cells: 3, 6, 7, 8. "
                                                                                       "Your move?"]


def test_tictactoe_illegal_cell_is_rejected(registry, llamagym_tiny, llamagym_plugin_manager):
    model, tokenizer = llamagym_tiny
    agent = TicTacToeAgent(model, tokenizer, "cpu", plugin_manager=llamagym_plugin_manager, seed=0)
    table = AECTable(registry.env("tictactoe_v3").make())
    table.reset(0)
    view = play(table, [cell_to_action(5)])
    with pytest.raises(ActionParseError, match="not legal"):
        agent.extract_action("My move: cell 5", view)
    assert agent.extract_action("My move: cell 1", view) == cell_to_action(1)
    assert {agent.fallback_action(view) for _ in range(40)} == set(view.legal_actions)


def test_connect_four_board_matches_the_env(registry):
    table = AECTable(registry.env("connect_four_v3").make())
    table.reset(0)
    view = play(table, [3, 3, 0])  # X in column 4, O on top of it, X in column 1
    assert render(ConnectFourAgent, view).splitlines() == [
        "You are O.", "1 2 3 4 5 6 7", *[". . . . . . ."] * 4, ". . . O . . .", "X . . X . . .",
        "Open columns: 1, 2, 3, 4, 5, 6, 7. Your move?"]
    assert parse(ConnectFourAgent, "My move: column 7", view) == 6


def test_rps_text_and_parsing(registry):
    env = registry.env("rps_v2").make()
    observations, _ = env.reset(seed=0)
    from llamagym.rollout.games.tables import ParallelTable

    table = ParallelTable(env)
    table.reset(0)
    views, _ = table.advance()
    assert render(RockPaperScissorsAgent, views["player_0"]) == (
        "This is the first round. Your throw: rock, paper or scissors?")
    table.step({"player_0": 0, "player_1": 1})
    views, _ = table.advance()
    assert render(RockPaperScissorsAgent, views["player_0"]).startswith("Your opponent's last throw was paper.")
    assert parse(RockPaperScissorsAgent, "I throw Scissors!", views["player_0"]) == 2


def test_leduc_text_matches_the_cards_dealt(registry):
    table = AECTable(registry.env("leduc_holdem_v4").make())
    table.reset(3)
    view = play(table, [])
    game = table.env.unwrapped.env.game
    seat = int(view.agent_id.split("_")[1])
    hand = {"J": "jack", "Q": "queen", "K": "king"}[game.players[seat].hand.rank]
    assert leduc_state(view.observation)[:2] == (hand, None)
    text = render(LeducHoldemAgent, view)
    assert f"Your card is a {hand}. No public card yet." in text and "Legal moves: call, raise, fold" in text
    assert parse(LeducHoldemAgent, "I fold.", view) == 2


def test_texas_text_lists_the_hole_cards(registry):
    table = AECTable(registry.env("texas_holdem_v4").make())
    table.reset(5)
    view = play(table, [])
    game = table.env.unwrapped.env.game
    seat = int(view.agent_id.split("_")[1])
    suits = {"S": "spades", "H": "hearts", "D": "diamonds", "C": "clubs"}
    ranks = {"A": "ace", "T": "10", "J": "jack", "Q": "queen", "K": "king"}
    expected = {f"{ranks.get(c.rank, c.rank)} of {suits[c.suit]}" for c in game.players[seat].hand}
    cards, raises = texas_state(view.observation)
    assert set(cards) == expected and raises == [0, 0, 0, 0]
    assert "Legal moves: call, raise, fold" in render(TexasHoldemAgent, view)


def test_scripted_opponents_are_registered_per_env(registry):
    pm = registry.pm
    names = {(s.name, s.envs) for s in scripted_opponents(pm)}
    assert ("heuristic", ("tictactoe_v3",)) in names and ("heuristic", ("connect_four_v3",)) in names
    assert find_scripted(pm, "heuristic", "connect_four_v3").load().__name__ == "connect_four_heuristic"
    with pytest.raises(Exception, match="unknown opponent for rps_v2 'heuristic'"):
        find_scripted(pm, "heuristic", "rps_v2")


def play_out(registry, env_id, first, second, games, seed=0):
    """Score of `first` (in alternating seats) against `second`: (wins, draws, losses)."""
    rng = random.Random(seed)
    score = [0, 0, 0]
    for game in range(games):
        table = AECTable(registry.env(env_id).make())
        table.reset(game)
        me = table.seats[game % 2]
        returns = {seat: 0.0 for seat in table.seats}
        while True:
            waiting, rewards = table.advance()
            for seat, reward in rewards.items():
                returns[seat] += reward
            if not waiting:
                break
            (seat, view), = waiting.items()
            move = (first if seat == me else second)(view, rng)
            for s, reward in table.step({seat: move}).items():
                returns[s] += reward
        score[0 if returns[me] > 0 else 1 if returns[me] == 0 else 2] += 1
    return score


def test_tictactoe_heuristic_beats_random_and_never_loses(registry):
    heuristic = find_scripted(registry.pm, "heuristic", "tictactoe_v3").load()
    wins, draws, losses = play_out(registry, "tictactoe_v3", heuristic, random_move, 100)
    assert wins >= 75 and losses <= 5


def test_connect_four_heuristic_beats_random(registry):
    heuristic = find_scripted(registry.pm, "heuristic", "connect_four_v3").load()
    wins, draws, losses = play_out(registry, "connect_four_v3", heuristic, random_move, 40)
    assert wins >= 34


def test_heuristic_takes_a_win_and_blocks(registry):
    heuristic = find_scripted(registry.pm, "heuristic", "tictactoe_v3").load()
    table = AECTable(registry.env("tictactoe_v3").make())
    table.reset(0)
    # X: cells 1, 2; O: cells 4, 5; X to move wins with cell 3
    view = play(table, [cell_to_action(c) for c in (1, 4, 2, 5)])
    assert heuristic(view, random.Random(0)) == cell_to_action(3)
    table.reset(0)
    view = play(table, [cell_to_action(c) for c in (1, 4, 9)])  # X holds 1 and 9, O holds 4; O to move
    assert heuristic(view, random.Random(0)) == cell_to_action(5)  # O blocks the 1-5-9 diagonal
