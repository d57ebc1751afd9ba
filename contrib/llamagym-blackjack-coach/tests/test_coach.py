"""The coach shapes the blackjack agent's reward (an agent from another package) towards basic strategy."""

import itertools

import gymnasium as gym
import pytest

from llamagym import Agent
from llamagym.agent.episode import episode_stats
from llamagym_blackjack.agent import BlackjackAgent
from llamagym_blackjack.strategy import HIT, STICK, basic_strategy
from llamagym_blackjack_coach import plugin


@pytest.fixture
def coached(llamagym_tiny, llamagym_plugin_manager):
    model, tokenizer = llamagym_tiny
    llamagym_plugin_manager.register(plugin, name="blackjack-coach")
    return BlackjackAgent(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=llamagym_plugin_manager,
                          action_space=gym.make("Blackjack-v1").action_space)


def answer(agent, observation, response, action, reward):
    """One turn whose response is set by the test (the tiny model's own answers are random)."""
    agent.act(observation)
    turn = agent.current_episode().turns[-1]
    turn.response, turn.action = response, action
    agent.assign_reward(reward)
    return turn


def test_the_basic_strategy_move_earns_the_bonus_and_the_other_loses_it(coached):
    right = answer(coached, (20, 10, 0), "My answer: stick", STICK, 1.0)  # basic strategy sticks on hard 20
    assert right.shaping == {"blackjack-coach": plugin.BONUS} and right.env_reward == 1.0
    assert right.reward == pytest.approx(1.0 + plugin.BONUS)
    coached.terminate_episode()
    wrong = answer(coached, (11, 6, 0), "My answer: stick", STICK, 0.0)  # ...and hits on 11
    assert wrong.shaping == {"blackjack-coach": -plugin.BONUS}
    episode = coached.end_episode()
    assert episode_stats([episode])["shaping/blackjack-coach"] == pytest.approx(-plugin.BONUS)


def test_an_answer_without_a_valid_move_is_not_coached(coached):
    turn = answer(coached, (20, 10, 0), "My answer: dunno", STICK, 0.0)
    assert turn.shaping == {}


def test_other_agents_are_left_alone(llamagym_tiny, llamagym_plugin_manager):
    class Other(Agent):
        def get_system_prompt(self): return "other"
        def format_observation(self, observation): return "x"
        def extract_action(self, response): return 0

    model, tokenizer = llamagym_tiny
    assert plugin.llamagym_shape_reward(agent=Other(model, tokenizer, "cpu", plugin_manager=llamagym_plugin_manager),
                                        observation=(20, 10, 0), response="stick", action=0) is None


def test_the_terms_follow_the_strategy_table_on_every_hand(coached):
    for player, dealer, ace in itertools.product(range(4, 22), range(1, 11), (0, 1)):
        best = basic_strategy((player, dealer, ace))
        for action, word in ((STICK, "stick"), (HIT, "hit")):
            term = plugin.llamagym_shape_reward(agent=coached, observation=(player, dealer, ace),
                                                response=f"My answer: {word}", action=action)
            assert term == (plugin.BONUS if action == best else -plugin.BONUS)
