"""The advantage estimators (`ppo.advantage`): hand-computed GAE, group-relative (GRPO) and running-baseline
(REINFORCE) advantages, the value head left alone without GAE, grouped rollouts whose updates hold whole groups,
and the combinations refused with a clear error."""

import json
import random

import pytest
import torch
from click.testing import CliRunner

from llamagym.algo.advantages import EpisodeSteps, GroupBaseline, RunningBaseline, check_data_parallel, discounted_return, make_estimator
from llamagym.cli import cli
from llamagym.run.loop import train_loop
from llamagym.testing.engines import UpdateLog
from llamagym.config import LoraConfig, PPOConfig
from llamagym.agent.episode import Episode, Turn
from llamagym.errors import ConfigError
from llamagym.policy.models import add_lora
from llamagym.rollout.gym import RolloutEngine
from llamagym.algo.trainer import PPOTrainer, Sample
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead


def steps(rewards, discounts, group=None):
    rewards = torch.tensor(rewards)
    return EpisodeSteps(rewards, torch.zeros_like(rewards), torch.tensor(discounts), group)


def test_discounted_return_applies_the_discount_between_turns():
    # two turns: tokens (0.1, -0.2) then (1.0); gamma = 0.5 between them
    assert discounted_return(steps([0.1, -0.2, 1.0], [1.0, 0.5, 0.0])) == pytest.approx(0.1 - 0.2 + 0.5 * 1.0)


def test_group_baseline_is_the_mean_return_of_the_group():
    episodes = [steps([0.0, 1.0], [1, 0], "a"), steps([-1.0], [0], "a"), steps([0.5], [0], "b"),
                steps([0.25, 0.25], [1, 0], "b"), steps([2.0], [0], "c")]
    estimates = GroupBaseline(PPOConfig(advantage="grpo")).estimate(episodes)
    # group a: returns 1 and -1, mean 0; group b: 0.5 and 0.5; group c alone: its own mean
    assert [a.tolist() for a, _ in estimates] == [[1.0, 1.0], [-1.0], [0.0], [0.0, 0.0], [0.0]]
    assert [r.tolist() for _, r in estimates] == [[1.0, 1.0], [-1.0], [0.5], [0.5, 0.5], [2.0]]


def test_running_baseline_follows_the_batch_means():
    estimator = RunningBaseline(PPOConfig(advantage="reinforce", baseline_rate=0.1))
    first = estimator.estimate([steps([r], [0]) for r in (1.0, 0.0, -1.0, 2.0)])  # mean 0.5: its own baseline
    assert [a.item() for a, _ in first] == [0.5, -0.5, -1.5, 1.5] and estimator.baseline == 0.5
    second = estimator.estimate([steps([1.0], [0]), steps([0.5, 0.5], [1, 0])])  # mean 1.0, baseline still 0.5
    assert [a.tolist() for a, _ in second] == [[0.5], [0.5, 0.5]] and estimator.baseline == pytest.approx(0.55)
    restored = RunningBaseline(PPOConfig(advantage="reinforce"))
    restored.load_state_dict(estimator.state_dict())
    assert restored.estimate([steps([0.0], [0])])[0][0].item() == pytest.approx(-0.55)


def test_grpo_needs_whole_groups_in_a_batch_and_groups_on_its_episodes():
    with pytest.raises(ConfigError, match=r"ppo.batch_size \(6\) must be a multiple of ppo.group_size \(4\)"):
        make_estimator(PPOConfig(advantage="grpo", batch_size=6, group_size=4))
    with pytest.raises(ConfigError, match="an episode has no group"):
        GroupBaseline(PPOConfig(advantage="grpo")).estimate([steps([1.0], [0])])


@pytest.mark.parametrize("advantage", ["grpo", "reinforce"])
def test_data_parallel_runs_refuse_a_local_baseline(advantage):
    with pytest.raises(ConfigError, match=f"ppo.advantage = {advantage} is not supported in data-parallel runs"):
        check_data_parallel(PPOConfig(advantage=advantage))
    check_data_parallel(PPOConfig(advantage="gae"))


def lora_trainer(tiny, **config):
    model, tokenizer = tiny
    policy = AutoModelForCausalLMWithValueHead(add_lora(model, LoraConfig(r=4, alpha=8)))
    torch.nn.init.normal_(policy.v_head.weight)  # a zero head would hide a GAE baseline
    return PPOTrainer(policy, PPOConfig(**config), pad_token_id=tokenizer.pad_token_id)


def two_turn_episodes():
    return [Episode([Turn([1, 2], [3, 4], "", None, 0, reward=0.0), Turn([1, 2, 5], [6], "", None, 0, reward=r)],
                    group=g) for r, g in ((1.0, 7), (-1.0, 7), (0.0, 8), (1.0, 8))]


@pytest.mark.parametrize("advantage, expected", [
    ("grpo", [1.0, -1.0, -0.5, 0.5]),        # group 7: returns 1, -1 (mean 0); group 8: 0, 1 (mean 0.5)
    ("reinforce", [0.75, -1.25, -0.25, 0.75]),  # first batch: its own mean return, 0.25
])
def test_the_trainer_gives_every_token_of_an_episode_its_advantage(tiny, advantage, expected):
    trainer = lora_trainer(tiny, advantage=advantage, whiten_advantages=False, kl_coef=0.0, batch_size=4,
                           group_size=2)
    episodes = two_turn_episodes()
    samples = [Sample(t.query_ids, t.response_ids, t.reward, e) for e, ep in enumerate(episodes) for t in ep.turns]
    trainer._score(samples)
    trainer._advantages(samples, len(episodes), [e.group for e in episodes])
    for sample in samples:  # both turns of an episode (3 tokens in all) share its advantage
        assert torch.allclose(sample.advantages, torch.full((len(sample.response),), expected[sample.episode]))


@pytest.mark.parametrize("advantage", ["gae", "grpo", "reinforce"])
def test_only_gae_trains_the_value_head(tiny, advantage):
    trainer = lora_trainer(tiny, advantage=advantage, batch_size=4, group_size=2, mini_batch_size=8,
                           learning_rate=1e-2)
    head = trainer.model.v_head.weight.detach().clone()
    stats = trainer.step(two_turn_episodes())
    assert stats["ppo/update"] == 1
    assert torch.equal(trainer.model.v_head.weight, head) == (advantage != "gae")
    assert ("ppo/loss/value" in stats) == (advantage == "gae")
    assert ("estimator" in trainer.state_dict()) and trainer.state_dict()["estimator"] == (
        {"baseline": 0.25} if advantage == "reinforce" else {})


class CountingEnv:
    """Episodes of 1-3 steps (drawn from the reset seed); reward = the seed's parity, so a group's returns agree."""

    action_space = None

    def reset(self, seed=None):
        self.seed, self.left = seed, 1 + seed % 3
        return seed, {}

    def step(self, action):
        self.left -= 1
        return self.seed, float(self.seed % 2), self.left == 0, False, {}

    def close(self):
        pass


class RecordingAgent:
    """The calls a rollout engine makes, with PPO replaced by a record of each batch's episode groups."""

    action_space = "any"

    def __init__(self, batch_size):
        from llamagym.plugins.manager import build_plugin_manager

        self.ppo_config = PPOConfig(batch_size=batch_size)
        self.plugin_manager = build_plugin_manager(load_entry_points=False)  # hooks ask it (episode outcomes)
        self.buffer, self.batches, self.episodes = [], [], {}

    def messages(self, slot=0):
        return None  # keeps no conversation

    def reset_conversations(self):
        self.episodes.clear()

    def act_batch(self, observations):
        for slot in observations:
            self.episodes.setdefault(slot, Episode()).turns.append(Turn([1], [2], "", None, 0))
        return {slot: 0 for slot in observations}

    def assign_reward(self, reward, slot=0):
        self.episodes[slot].turns[-1].reward += reward

    def current_episode(self, slot=0):
        return self.episodes.get(slot)

    def end_episode(self, slot=0):
        return self.episodes.pop(slot, None)

    def terminate_episode(self, slot=0):
        self.buffer.append(self.end_episode(slot))
        return self.train() if len(self.buffer) >= self.ppo_config.batch_size else {}

    def train(self):
        self.batches.append(sorted(e.group for e in self.buffer))
        self.buffer = []
        return {"ppo/update": len(self.batches)}


def test_grouped_rollouts_share_seeds_and_update_on_whole_groups():
    agent = RecordingAgent(batch_size=6)
    engine = RolloutEngine(agent, CountingEnv, num_envs=4, seed=3, group_size=3)
    log = UpdateLog()
    results = train_loop(engine, 14, log=log)
    seeds = {r.index: r.seed for r in results}
    assert all(seeds[i] == seeds[i - i % 3] for i in seeds) and len(set(seeds.values())) == 5
    # every update holds two whole groups; the last two episodes (a partial group) train at the end of the run
    assert len(agent.batches) == len(log.updates) == 3
    for batch in agent.batches[:2]:
        assert len(batch) == 6 and all(batch.count(g) == 3 for g in batch)
    assert agent.batches[2] == [seeds[12]] * 2 and not agent.buffer
    evaluation = engine.run(4, learn=False)  # evaluation episodes are never grouped
    assert len({r.seed for r in evaluation}) == 4


def test_a_dropped_episode_leaves_a_short_batch_that_still_trains_before_the_next():
    class FailingEnv(CountingEnv):
        def step(self, action):
            if self.seed == failing:
                raise RuntimeError("boom")
            return super().step(action)

    agent = RecordingAgent(batch_size=4)
    engine = RolloutEngine(agent, FailingEnv, num_envs=4, seed=0, group_size=2)
    failing = engine.episode_seed(2)  # episodes 2 and 3 (one group) fail
    train_loop(engine, 8)
    assert [len(b) for b in agent.batches] == [2, 4]
    assert agent.batches[0] == [engine.episode_seed(0)] * 2


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


@pytest.mark.parametrize("advantage", ["grpo", "reinforce"])
def test_runs_with_another_estimator_train_no_value_head(tiny_model_dir, tmp_path, advantage):
    from safetensors.torch import load_file

    out = tmp_path / advantage
    result = invoke("run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tiny_model_dir,
                    "--advantage", advantage, "--group-size", 2, "--episodes", 8, "--num-envs", 3, "--batch-size", 4,
                    "--mini-batch-size", 4, "--ppo-epochs", 1, "--lora-r", 2, "--max-new-tokens", 3, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["env/episodes"] for m in metrics] == [4, 4]
    head = load_file(str(out / "adapter" / "value_head.safetensors"))
    assert all(not tensor.any() for tensor in head.values())  # still the zero initialisation
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    seeds = {row["episode"]: row["seed"] for row in episodes}
    if advantage == "grpo":
        assert all(seeds[i] == seeds[i - i % 2] for i in seeds) and len(set(seeds.values())) == 4
    else:
        assert len(set(seeds.values())) == 8


def test_grpo_on_a_game_is_refused(tiny_model_dir, tmp_path):
    result = invoke("run", "--agent", "tictactoe", "--env", "tictactoe_v3", "--model", tiny_model_dir,
                    "--advantage", "grpo", "-o", tmp_path / "x", "-q")
    assert result.exit_code == 2 and "ppo.advantage = grpo needs episodes that start alike" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_data_parallel_run_refuses_grpo_before_it_starts(tmp_path, monkeypatch):
    from llamagym.config import RunConfig, build
    from llamagym.run.training import train

    monkeypatch.setenv("WORLD_SIZE", "2")  # as a launcher starts each process
    config = build(RunConfig, {"agent": "blackjack", "env": "Blackjack-v1", "ppo": {"advantage": "grpo"}})
    with pytest.raises(ConfigError, match="ppo.advantage = grpo is not supported in data-parallel runs"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _logprob(policy, tokens):
    from llamagym.algo.trainer import make_batch

    with torch.no_grad():
        batch = make_batch([Sample([1, 30, 31, 32], tokens, 0.0, 0)], 0, torch.device("cpu"))
        logits, _ = policy.response_logits_and_values(batch.input_ids, batch.attention_mask, batch.k)
        return torch.log_softmax(logits, -1).gather(-1, batch.targets[..., None]).sum().item()


@pytest.mark.parametrize("advantage", ["grpo", "reinforce"])
def test_every_estimator_moves_the_policy_towards_rewarded_answers(tiny, advantage):
    trainer = lora_trainer(tiny, advantage=advantage, learning_rate=3e-3, mini_batch_size=4, ppo_epochs=4,
                           batch_size=8, group_size=2)
    good, bad = [40, 41], [50, 51]
    episodes = [Episode([Turn([1, 30, 31, 32], tokens, "", None, 0, reward=r, env_reward=r)], group=pair)
                for pair in range(4) for tokens, r in ((good, 1.0), (bad, -1.0))]
    before = _logprob(trainer.model, good) - _logprob(trainer.model, bad)
    trainer.step(episodes)
    assert _logprob(trainer.model, good) - _logprob(trainer.model, bad) > before + 0.1
