"""The Blackjack plugin: prompt, parser, reference strategies, preset."""

import random

import gymnasium as gym
import pytest

from llamagym import ActionParseError
from llamagym.config import RunConfig, build
from llamagym_blackjack import agent as agent_module
from llamagym_blackjack import plugin, strategy
from llamagym_blackjack.agent import BlackjackAgent


@pytest.fixture
def agent(llamagym_tiny, llamagym_plugin_manager):
    model, tokenizer = llamagym_tiny
    return BlackjackAgent(model, tokenizer, "cpu", plugin_manager=llamagym_plugin_manager)


@pytest.mark.parametrize("response, action", [
    ("My answer: stick", 0), ("My answer: Hit", 1), ("My answer: I'd stand here", 0), ("My answer: HIT!", 1),
    ("My answer: stay. Or hit?", 0),
])
def test_extract_action(agent, response, action):
    assert agent.extract_action(response) == action


@pytest.mark.parametrize("response", ["My answer: sticking", "My answer: 17", "My answer: whatever"])
def test_unparsable_responses_raise(agent, response):
    with pytest.raises(ActionParseError):
        agent.extract_action(response)


def test_generation_stops_once_an_action_word_appears(agent):
    assert not agent.response_complete("My answer: I")
    assert agent.response_complete("My answer: I hit")


def test_format_observation(agent):
    assert agent.format_observation((15, 1, 1)) == (
        "Your hand totals 15 with a usable ace. Sticking on it wins only if the dealer busts. A hit cannot bust you. "
        "The dealer shows an ace and seldom goes bust (12% of the time). Hit or stick?")
    assert agent.format_observation((16, 10, 0)) == (
        "Your hand totals 16. Sticking on it wins only if the dealer busts. A hit busts you with 8 of the 13 ranks. "
        "The dealer shows a 10 and seldom goes bust (21% of the time). Hit or stick?")
    assert agent.format_observation((17, 6, 0)) == (
        "Your hand totals 17. A hit busts you with 9 of the 13 ranks. "
        "The dealer shows a 6 and often goes bust (42% of the time). Hit or stick?")


def test_dealer_bust_rates_agree_with_a_simulated_dealer():
    # the prompt's bust rates are exact (Gymnasium's dealer: infinite deck, draws below 17, stands on soft 17);
    # 20,000 simulated dealer hands per card agree within 4 standard errors, and "often" marks the cards 2-6
    rng = random.Random(0)
    deck = [min(rank, 10) for rank in range(1, 14)]
    for card in range(1, 11):
        busts = 0
        for _ in range(20_000):
            cards = [card, rng.choice(deck)]
            while (total := sum(cards) + (10 if 1 in cards and sum(cards) + 10 <= 21 else 0)) < 17:
                cards.append(rng.choice(deck))
            busts += total > 21
        p = agent_module.DEALER_BUST[card]
        assert abs(busts / 20_000 - p) < 4 * (p * (1 - p) / 20_000) ** 0.5, card
        assert ("often" in agent_module.dealer_card(card)) == (2 <= card <= 6)


def test_exact_policy_value_matches_the_known_policies():
    # the DP over the infinite deck agrees with a 4M-episode simulation (always stick -0.1862 ± 0.0005,
    # stick on 17+ -0.0795 ± 0.0005); basic strategy is the best policy and a coin flip the worst of these
    always_stick = strategy.policy_return(lambda s: 0.0)
    stick_on_17 = strategy.policy_return(lambda s: float(strategy.stick_on_17(s)))
    basic = strategy.policy_return(lambda s: float(strategy.basic_strategy(s)))
    coin = strategy.policy_return(lambda s: 0.5)
    assert abs(always_stick - -0.1862) < 0.002 and abs(stick_on_17 - -0.0795) < 0.002
    assert basic > stick_on_17 > always_stick > coin
    assert len(strategy.all_observations()) == 280


def test_basic_strategy_beats_the_simple_policies_exactly():
    # a few textbook cells of the hit/stick table
    assert strategy.basic_strategy((16, 10, 0)) == strategy.HIT
    assert strategy.basic_strategy((13, 2, 0)) == strategy.STICK
    assert strategy.basic_strategy((12, 2, 0)) == strategy.HIT
    assert strategy.basic_strategy((18, 9, 1)) == strategy.HIT
    assert strategy.basic_strategy((18, 8, 1)) == strategy.STICK


@pytest.mark.parametrize("name, expected", [("always stick", -0.18), ("stick on 17+", -0.075),
                                            ("basic strategy", -0.045)])
def test_reference_policies_reach_their_known_returns(name, expected):
    policy = strategy.REFERENCE_POLICIES[name]()
    env = gym.make("Blackjack-v1")
    total, n = 0.0, 6000
    for seed in range(n):
        observation, _ = env.reset(seed=seed)
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            done = terminated or truncated
        total += reward
    assert total / n == pytest.approx(expected, abs=0.04)


def test_preset_is_a_valid_config():
    from llamagym.config import load_toml

    config = build(RunConfig, load_toml(plugin.PRESET))
    assert config.generation.max_history_turns == 1 and config.ppo.batch_size >= 16


def test_exact_policy_returns_match_simulation_and_basic_strategy_is_optimal():
    exact = {name: strategy.policy_return(lambda o, p=make(): float(p(o)))
             for name, make in strategy.REFERENCE_POLICIES.items() if name != "random"}
    assert len(strategy.all_observations()) == 280
    assert exact["basic strategy"] > exact["stick on 17+"] > exact["always stick"]
    env, n, total = gym.make("Blackjack-v1"), 20000, 0.0
    for seed in range(n):
        observation, _ = env.reset(seed=10**6 + seed)
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(strategy.stick_on_17(observation))
            done = terminated or truncated
        total += reward
    assert total / n == pytest.approx(exact["stick on 17+"], abs=4 * 0.95 / n ** 0.5)
    # changing basic strategy's answer in any one observation cannot raise its return
    for flipped in [(16, 10, 0), (12, 4, 0), (18, 9, 1), (11, 6, 0)]:
        def deviating(o, flipped=flipped):
            action = strategy.basic_strategy(o)
            return float(1 - action if o == flipped else action)

        assert strategy.policy_return(deviating) < exact["basic strategy"]
    assert strategy.policy_return(lambda o: 0.5) < exact["always stick"]  # a coin flip in every observation
