"""`llamagym collect`: expert demonstrations that follow the expert and replay to their recorded returns, the
model's own episodes grouped by seed (best-of-n), rejection by return, games, and one-line errors."""

import json
import re

import gymnasium as gym
import pytest
from click.testing import CliRunner

from llamagym import Agent
from llamagym.cli import cli
from llamagym.tools.collect import best_per_group, collect, collecting
from llamagym.errors import UsageError


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


HAND = re.compile(r"Your hand totals (\d+)( with a usable ace)?\. .*The dealer shows (?:an? )?(\w+)\b")


def observation_of(text):
    player, ace, dealer = HAND.search(text).groups()
    return int(player), 1 if dealer == "ace" else int(dealer), int(bool(ace))


def test_expert_demonstrations_follow_basic_strategy_and_replay_to_their_returns(tiny_model_dir, tmp_path):
    from llamagym_blackjack.strategy import basic_strategy

    out = tmp_path / "expert.jsonl"
    result = invoke("collect", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tiny_model_dir,
                    "--policy", "expert", "--episodes", 40, "--num-envs", 4, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    records = rows(out)
    assert len(records) == 40 and len({r["seed"] for r in records}) == 40
    assert {r["agent"] for r in records} == {"blackjack"} and {r["policy"] for r in records} == {"expert"}
    env = gym.make("Blackjack-v1")
    for record in records:
        messages = record["messages"]
        assert messages[0]["role"] == "system" and record["invalid_turns"] == 0
        for user, answer in zip(messages[1::2], messages[2::2]):
            word = "hit" if basic_strategy(observation_of(user["content"])) else "stick"
            assert answer == {"role": "assistant", "content": f"My answer: {word}"}
        observation, _ = env.reset(seed=record["seed"])  # the same deal, played by basic strategy again
        total, done, turns = 0.0, False, 0
        while not done:
            observation, reward, terminated, truncated, _ = env.step(basic_strategy(observation))
            total, done, turns = total + reward, terminated or truncated, turns + 1
        assert (record["return"], record["turns"]) == (total, turns)


def test_min_return_keeps_only_episodes_that_reach_it(tiny_model_dir, tmp_path):
    out = tmp_path / "wins.jsonl"
    result = invoke("collect", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tiny_model_dir,
                    "--policy", "expert", "--episodes", 40, "--min-return", 1, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    kept = rows(out)
    assert 0 < len(kept) < 40 and all(r["return"] >= 1 for r in kept)
    assert f"kept {len(kept)} of 40 episodes" in result.output


def test_best_of_groups_share_a_seed_and_the_best_is_kept(tiny_model_dir):
    from llamagym.config import RunConfig, build
    from llamagym.plugins.registry import get_registry
    from llamagym.run.setup import build_agent, make_engine

    config = build(RunConfig, {"agent": "blackjack", "env": "Blackjack-v1", "model": str(tiny_model_dir),
                               "num_envs": 4, "lora": {"r": 2}, "generation": {"max_new_tokens": 3}})
    agent = collecting(build_agent(config), expert=False)
    engine = make_engine(agent, get_registry().env(config.env), config, group_size=3)
    played = collect(agent, engine, 12, best_of=1).records  # every episode, to see the groups
    assert [r["index"] for r in played] == list(range(12))
    seeds = [r["seed"] for r in played]
    assert all(seeds[i] == seeds[i - i % 3] for i in range(12)) and len(set(seeds)) == 4
    assert not agent.buffer and agent.trainer.updates == 0  # collecting never trains


def test_best_per_group_takes_the_highest_return_first_on_a_tie():
    returns = [0.0, 1.0, 1.0, -1.0, -1.0, -1.0, 0.5]
    records = [{"index": i, "return": r} for i, r in enumerate(returns)]
    assert [r["index"] for r in best_per_group(records, 3)] == [1, 3, 6]
    assert best_per_group(records, 1) == records


def test_expert_games_never_lose_and_alternate_seats(tiny_model_dir, tmp_path):
    out = tmp_path / "ttt.jsonl"
    result = invoke("collect", "--agent", "tictactoe", "--env", "tictactoe_v3", "--model", tiny_model_dir,
                    "--policy", "expert", "--episodes", 6, "--num-envs", 3, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    records = rows(out)
    assert len(records) == 6 and all(r["return"] >= 0 for r in records)
    assert {r["seat"] for r in records} == {"player_1", "player_2"}
    answers = [m["content"] for r in records for m in r["messages"] if m["role"] == "assistant"]
    assert answers and all(re.fullmatch(r"My move: cell [1-9]", a) for a in answers)


class Counter(Agent):
    def get_system_prompt(self):
        return "Say a number."

    def format_observation(self, observation):
        return f"Observation {observation}."

    def extract_action(self, response):
        return int(response.split()[-1])

    def format_action(self, action):
        return f" {action}"


def test_an_agent_without_expert_is_told_how_to_get_one(tiny, bare_pm):
    model, tokenizer = tiny
    agent = collecting(Counter(model, tokenizer, "cpu", plugin_manager=bare_pm), expert=True)
    with pytest.raises(UsageError, match="agent Counter has no expert policy: a plugin must implement "
                                         "llamagym_expert_action"):
        agent.act_batch({0: 3})


def test_a_demonstration_must_read_back_as_the_experts_action(tiny, bare_pm):
    from llamagym_blackjack import plugin
    from llamagym_blackjack.agent import BlackjackAgent

    class Mumbling(BlackjackAgent):
        def format_action(self, action):
            return " maybe"

    bare_pm.register(plugin, name="blackjack")
    model, tokenizer = tiny
    agent = collecting(Mumbling(model, tokenizer, "cpu", plugin_manager=bare_pm), expert=True)
    with pytest.raises(UsageError, match=r"Mumbling.format_action\(1\) gives ' maybe', which its extract_action "
                                         r"reads as no action"):
        agent.act_batch({0: (16, 10, 0)})


@pytest.mark.parametrize("args, message", [
    (["--agent", "tictactoe", "--env", "tictactoe_v3", "--best-of", "2"], "--best-of needs a Gymnasium env"),
    (["--agent", "blackjack", "--env", "Blackjack-v1", "--opponent", "random"], "--opponent applies to PettingZoo"),
    (["--agent", "blackjack", "--env", "Blackjack-v1", "--policy", "expert", "--checkpoint", "."],
     "--checkpoint samples from a trained model"),
    (["--agent", "blackjack", "--env", "Blackjack-v1", "--policy", "expert", "--best-of", "2"],
     "--best-of compares sampled episodes"),
    (["--agent", "blackjak", "--env", "Blackjack-v1"], "unknown agent 'blackjak'"),
])
def test_bad_input_is_one_line(tiny_model_dir, tmp_path, args, message):
    result = invoke("collect", *args, "--model", tiny_model_dir, "-o", tmp_path / "x.jsonl", "-q")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_an_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "x.jsonl"
    out.write_text("")
    result = invoke("collect", "--agent", "blackjack", "--env", "Blackjack-v1", "-o", out)
    assert result.exit_code == 2 and "pass --overwrite" in result.output
