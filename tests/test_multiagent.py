"""The multi-agent engine: per-seat turn and reward bookkeeping on scripted games (AEC and Parallel), the
advantages PPO computes from them, the illegal-move rule, and the policy set-ups (self-play pool, one adapter
per seat, frozen checkpoint)."""

import pytest

from llamagym.run.loop import train_loop
from llamagym.testing.engines import UpdateLog, play_and_store
import torch

from llamagym import Agent, ConfigError
from llamagym.config import LoraConfig
from llamagym.policy.models import add_lora
from llamagym.multiagent import GameAgent, SeatObservation
from llamagym.rollout.games.adapters import adapter_state
from llamagym.rollout.games.build import make_opponent, separate_policies
from llamagym.rollout.games.engine import GameEngine
from llamagym.rollout.games.lineups import PerSeat, SelfPlay, VersusOpponent
from llamagym.rollout.games.players import PolicyPlayer
from llamagym.rollout.games.pool import SnapshotPool
from llamagym.algo.trainer import Sample
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead

pytest.importorskip("pettingzoo")


def tictactoe():
    from pettingzoo.classic.tictactoe import tictactoe

    return tictactoe.env()


def rps(max_cycles=3):
    from pettingzoo.classic.rps import rps as module

    return module.parallel_env(max_cycles=max_cycles)


class ScriptedAgent(GameAgent):
    """Plays a fixed list of moves per seat, whatever the model says (the bookkeeping is what is tested)."""

    def __init__(self, *args, script, **kwargs):
        super().__init__(*args, **kwargs)
        self.script = {seat: list(moves) for seat, moves in script.items()}

    def get_system_prompt(self):
        return "Play."

    def format_observation(self, observation):
        return f"{observation.agent_id} to move"

    def parse_move(self, response, observation):
        return self.script[observation.agent_id].pop(0)


def scripted_agent(tiny, bare_pm, script, **ppo):
    model, tokenizer = tiny
    settings = {"batch_size": 1000, "gamma": 0.5, "lam": 1.0, "kl_coef": 0.0, "adaptive_kl": False,
                "whiten_advantages": False, **ppo}
    return ScriptedAgent(model, tokenizer, "cpu", {"max_new_tokens": 3}, settings, plugin_manager=bare_pm,
                         seed=0, script=script)


def advantages_by_turn(agent, episodes):
    """Per-turn advantages (one value per turn: within a turn every token gets the same one here)."""
    samples = [Sample(t.query_ids, t.response_ids, float(t.reward), e)
               for e, episode in enumerate(episodes) for t in episode.turns]
    agent.trainer._score(samples)
    agent.trainer._advantages(samples, len(episodes))
    out: list[list[float]] = [[] for _ in episodes]
    for sample in samples:
        assert torch.allclose(sample.advantages, sample.advantages[-1].expand_as(sample.advantages))
        out[sample.episode].append(round(float(sample.advantages[-1]), 6))
    return out


def test_aec_turns_rewards_and_advantages_per_seat(tiny, bare_pm):
    # X (player_1) takes the top row (action ids 0, 3, 6: PettingZoo numbers cells column by column); O
    # (player_2) plays 1 and 4 and loses. O's -1 arrives with X's last move, after O's own last turn.
    agent = scripted_agent(tiny, bare_pm, {"player_1": [0, 3, 6], "player_2": [1, 4]})
    engine = GameEngine(tictactoe, SelfPlay(PolicyPlayer(agent)), num_tables=1, seed=0)
    [result] = play_and_store(engine, 1)
    x_episode, o_episode = agent.buffer
    assert [t.observation.agent_id for t in x_episode.turns] == ["player_1"] * 3
    assert [t.observation.agent_id for t in o_episode.turns] == ["player_2"] * 2
    assert [t.action for t in x_episode.turns] == [0, 3, 6] and [t.action for t in o_episode.turns] == [1, 4]
    assert [t.reward for t in x_episode.turns] == [0.0, 0.0, 1.0]
    assert [t.reward for t in o_episode.turns] == [0.0, -1.0]
    assert result.returns == {"player_1": 1.0, "player_2": -1.0}
    assert result.turns == 5 and result.invalid_turns == 0
    # zero value head and no KL term: the advantage is the discounted return-to-go, gamma 0.5 per turn
    assert advantages_by_turn(agent, agent.buffer) == [[0.25, 0.5, 1.0], [-0.5, -1.0]]


def test_parallel_rewards_reach_each_seats_own_turns(tiny, bare_pm):
    # rock paper scissors, three rounds: player_0 always rock; player_1 paper, rock, scissors
    agent = scripted_agent(tiny, bare_pm, {"player_0": [0, 0, 0], "player_1": [1, 0, 2]}, gamma=1.0)
    engine = GameEngine(rps, SelfPlay(PolicyPlayer(agent)), kind="parallel", num_tables=1)
    [result] = play_and_store(engine, 1)
    first, second = agent.buffer
    assert [t.reward for t in first.turns] == [-1.0, 0.0, 1.0]
    assert [t.reward for t in second.turns] == [1.0, 0.0, -1.0]
    assert result.returns == {"player_0": 0.0, "player_1": 0.0}
    assert advantages_by_turn(agent, agent.buffer) == [[0.0, 1.0, 1.0], [0.0, -1.0, -1.0]]


class AlwaysTopLeft(Agent):
    """A plain Agent that knows nothing of legal moves: it always answers cell 0."""

    def get_system_prompt(self):
        return "Play."

    def format_observation(self, observation):
        return "move"

    def extract_action(self, response):
        return 0


class AlwaysTopLeftGame(ScriptedAgent):
    def parse_move(self, response, observation):
        return 0


@pytest.mark.parametrize("agent_class", [AlwaysTopLeft, AlwaysTopLeftGame])
def test_illegal_moves_become_random_legal_moves_with_the_penalty(tiny, bare_pm, agent_class):
    model, tokenizer = tiny
    kwargs = {"script": {}} if agent_class is AlwaysTopLeftGame else {}
    agent = agent_class(model, tokenizer, "cpu", {"max_new_tokens": 2},
                        {"batch_size": 1000, "invalid_action_penalty": -0.5}, plugin_manager=bare_pm, seed=0,
                        **kwargs)
    engine = GameEngine(tictactoe, SelfPlay(PolicyPlayer(agent)), num_tables=3, seed=1)
    results = play_and_store(engine, 6)
    turns = [t for episode in agent.buffer for t in episode.turns]
    assert len(turns) == sum(r.turns for r in results) >= 6 * 5
    for turn in turns:
        assert turn.observation.is_legal(turn.action)  # the move actually played
        assert turn.valid == (0 in turn.observation.legal_actions)
        assert turn.reward - turn.env_reward == (0.0 if turn.valid else -0.5)
    invalid = sum(not t.valid for t in turns)
    assert invalid >= len(turns) - 6 * 2  # cell 0 is free at most on the first move of each player
    assert sum(r.invalid_turns for r in results) == invalid == agent.counters["invalid_turns"]
    assert all(r.error is None for r in results)


def lora_agent(tiny, bare_pm, agent_class=None, **ppo):
    model, tokenizer = tiny
    policy = AutoModelForCausalLMWithValueHead(add_lora(model, LoraConfig(r=4, alpha=8)))
    settings = {"batch_size": 4, "mini_batch_size": 8, "ppo_epochs": 1, "learning_rate": 1e-2, **ppo}
    return (agent_class or RandomMoves)(policy, tokenizer, "cpu", {"max_new_tokens": 2}, settings,
                                        plugin_manager=bare_pm, seed=0)


class RandomMoves(GameAgent):
    """Whatever the tiny model says becomes a random legal move (the fallback), so games always finish."""

    def get_system_prompt(self):
        return "Play."

    def format_observation(self, observation):
        return f"{observation.agent_id}: {list(observation.legal_actions)}"

    def parse_move(self, response, observation):
        return int(response.strip()[:1])


def lora_weights(agent, adapter):
    return {k: v.clone() for k, v in adapter_state(agent, adapter).items()}


def changed(before, after):
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_separate_policies_train_their_own_adapters_only(tiny, bare_pm):
    agent = lora_agent(tiny, bare_pm)
    main = PolicyPlayer(agent, adapter="default")
    policies = separate_policies(agent, main, ["player_1", "player_2"])
    other = policies["player_2"].agent
    main_params = {id(p) for group in agent.trainer.optimizer.param_groups for p in group["params"]}
    other_params = {id(p) for group in other.trainer.optimizer.param_groups for p in group["params"]}
    assert main_params and other_params and not main_params & other_params
    assert other.model.v_head is not agent.model.v_head
    before = {name: lora_weights(agent, name) for name in ("default", "player_2")}
    log = UpdateLog()
    engine = GameEngine(tictactoe, PerSeat(policies, main), num_tables=4, seed=0)
    train_loop(engine, 8, log=log)
    updates = log.updates
    assert agent.model.pretrained_model.active_adapter == "default"
    assert len([u for u in updates if "policy" not in u]) >= 2
    assert len([u for u in updates if u.get("policy") == "player_2"]) >= 2
    assert all(len(e.turns) > 0 for e in agent.buffer + other.buffer)
    assert changed(before["default"], lora_weights(agent, "default"))
    assert changed(before["player_2"], lora_weights(agent, "player_2"))


def test_training_one_policy_leaves_the_other_adapters_alone(tiny, bare_pm):
    agent = lora_agent(tiny, bare_pm)
    main = PolicyPlayer(agent, adapter="default")
    separate_policies(agent, main, ["player_1", "player_2"])
    before = {name: lora_weights(agent, name) for name in ("default", "player_2")}
    engine = GameEngine(tictactoe, VersusOpponent(main, _random_player()), num_tables=2, seed=0)
    train_loop(engine, 8)
    assert changed(before["default"], lora_weights(agent, "default"))
    assert not changed(before["player_2"], lora_weights(agent, "player_2"))


def _random_player():
    from llamagym.rollout.games.players import ScriptedPlayer, random_move

    return ScriptedPlayer(random_move, "random")


def test_selfplay_pool_plays_past_snapshots(tiny, bare_pm):
    agent = lora_agent(tiny, bare_pm)
    main = PolicyPlayer(agent, adapter="default")
    pool = SnapshotPool(agent, "default", size=2, every=1)
    engine = GameEngine(tictactoe, SelfPlay(main, pool, pool_rate=1.0), num_tables=2, seed=0)
    first = lora_weights(agent, "default")
    log = UpdateLog()
    results = train_loop(engine, 12, log=log)
    assert pool.snapshots >= 2 and len(pool.players) >= 1
    snapshot_games = [r for r in results if "snapshot" in r.players.values()]
    assert snapshot_games and all(sorted(r.players.values()) == ["policy", "snapshot"] for r in snapshot_games)
    snapshot = lora_weights(agent, "pool_0")
    assert changed(first, snapshot)  # a snapshot of the trained adapter, not the initial one
    # a snapshot is frozen: its turns are never stored for training (one seat per snapshot game)
    trained = sum(stats["env/episodes"] for stats in log.updates)
    assert not agent.buffer and trained == 2 * len(results) - len(snapshot_games)
    engine.close()
    assert "pool_0" not in agent.model.pretrained_model.peft_config  # frozen adapters are not saved


def test_frozen_checkpoint_opponent_does_not_move(tiny, bare_pm, tmp_path):
    agent = lora_agent(tiny, bare_pm)
    with torch.no_grad():
        for name, param in agent.model.named_parameters():
            if "lora_B" in name:
                param.add_(0.01)
    agent.model.save_pretrained(tmp_path / "adapter")
    saved = lora_weights(agent, "default")
    opponent = make_opponent(agent, str(tmp_path / "adapter"), "tictactoe_v3")
    assert opponent.adapter == "opponent" and not opponent.learns
    assert not changed(saved, lora_weights(agent, "opponent"))
    engine = GameEngine(tictactoe, VersusOpponent(PolicyPlayer(agent, adapter="default"), opponent),
                        num_tables=2, seed=0)
    results = train_loop(engine, 8)
    assert {r.players["player_1"] for r in results} == {"policy", opponent.name}  # seats alternate
    assert changed(saved, lora_weights(agent, "default"))
    assert not changed(saved, lora_weights(agent, "opponent"))


def test_base_opponent_needs_lora(tiny, bare_pm):
    model, tokenizer = tiny
    agent = RandomMoves(model, tokenizer, "cpu", {"max_new_tokens": 2}, {}, plugin_manager=bare_pm)
    with pytest.raises(ConfigError, match="needs LoRA adapters"):
        make_opponent(agent, "base", "tictactoe_v3")


def test_unknown_seat_and_opponent_are_clear_errors(tiny, bare_pm):
    from llamagym.rollout.games.opponents import check_opponent

    agent = lora_agent(tiny, bare_pm)
    lineup = VersusOpponent(PolicyPlayer(agent), _random_player(), learner_seat="player_9")
    with pytest.raises(ConfigError, match="player_9.*player_1, player_2"):
        GameEngine(tictactoe, lineup, num_tables=1).run(1)
    with pytest.raises(ConfigError, match="unknown opponent for tictactoe_v3 'wizard'.*random"):
        check_opponent(bare_pm, "wizard", "tictactoe_v3")


def test_seat_observation_legal_moves():
    import numpy as np
    from gymnasium.spaces import Discrete

    from llamagym.rollout.games.observation import seat_observation

    masked = seat_observation({"observation": [1, 2], "action_mask": np.array([0, 1, 1, 0])}, "p", 0)
    assert masked.observation == [1, 2] and masked.legal_actions == (1, 2)
    assert masked.is_legal(np.int64(2)) and not masked.is_legal(0) and not masked.is_legal("x")
    assert seat_observation(3, "p", 1, Discrete(3)).legal_actions == (0, 1, 2)
    assert seat_observation(3, "p", 1, None).legal_actions is None
    assert isinstance(masked, SeatObservation)


def test_scripted_opponents_from_plugins(bare_pm):
    import types

    from llamagym import PluginError, hookimpl
    from llamagym.rollout.games.opponents import find_scripted

    def plugin(name, envs):
        @hookimpl
        def llamagym_register_opponents(register):
            register("greedy", "random:choice", envs=envs, description="takes anything")
        return types.SimpleNamespace(llamagym_register_opponents=llamagym_register_opponents)

    bare_pm.register(plugin("a", ("tictactoe_v3",)), name="a")
    bare_pm.register(plugin("b", ("connect_four_v3",)), name="b")
    assert find_scripted(bare_pm, "greedy", "connect_four_v3").plugin == "b"
    bare_pm.register(plugin("c", None), name="c")
    with pytest.raises(PluginError, match="'greedy' is registered by both"):
        find_scripted(bare_pm, "greedy", "tictactoe_v3")


class RecordingPlayer(PolicyPlayer):
    """Records how many seats each batched generation answered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def act_batch(self, observations):
        self.batches.append(sorted(observations))
        return super().act_batch(observations)


@pytest.mark.parametrize("versus_random", [False, True])
def test_one_generation_answers_every_seat_waiting_across_tables(tiny, bare_pm, versus_random):
    agent = lora_agent(tiny, bare_pm, batch_size=1000)
    main = RecordingPlayer(agent)
    lineup = VersusOpponent(main, _random_player()) if versus_random else SelfPlay(main)
    engine = GameEngine(tictactoe, lineup, num_tables=4, seed=0)
    results = play_and_store(engine, 8)
    # every table waits on the policy in the first rounds (random moves are made at once, not in a round)
    assert [len(batch) for batch in main.batches[:3]] == [4, 4, 4]
    assert all(len({table for table, _ in batch}) == len(batch) for batch in main.batches)  # one seat per table
    assert sum(len(batch) for batch in main.batches) == sum(r.turns for r in results)
