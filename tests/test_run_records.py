"""What runs and evaluations record (issue 18): an episode's outcome as the env or a plugin says it, the
conversation of each episode in `episodes.jsonl` (loadable with Hugging Face `datasets`, as `collect` outputs are),
and a progress bar that shows an update as a phase, keeps its time out of the per-episode rate, and ends on the
update count the run reports."""

from __future__ import annotations

import io
import json
import time
import types

import gymnasium
import pytest
from click.testing import CliRunner

from llamagym import hookimpl
from llamagym.cli import cli
from llamagym.errors import PluginError


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def load_as_dataset(path, **kwargs):
    datasets = pytest.importorskip("datasets")
    return datasets.load_dataset("json", data_files=str(path), split="train", **kwargs)


# ---- outcomes -------------------------------------------------------------------------------------------------

class PaysWins(gymnasium.Wrapper):
    """Blackjack that pays 1 for a win and 0 for a draw or a loss; `tell` says how the final step's info names the
    true outcome: "outcome" (the info key), "is_success" (Gymnasium's convention), or "" (not at all)."""

    def __init__(self, tell: str = "outcome"):
        super().__init__(gymnasium.make("Blackjack-v1"))
        self.tell = tell

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            if self.tell == "outcome":
                info = {**info, "outcome": "win" if reward > 0 else "loss" if reward < 0 else "draw"}
            elif self.tell == "is_success":
                info = {**info, "is_success": bool(reward > 0)}
        return observation, float(reward > 0), terminated, truncated, info


def _pays_wins_plugin(with_outcome_hook: bool = False):
    module = types.ModuleType("pays_wins")

    @hookimpl
    def llamagym_register_envs(register):
        register("PaysWins-v0", PaysWins, kwargs={"tell": "outcome"})
        register("PaysWinsSuccess-v0", PaysWins, kwargs={"tell": "is_success"})
        register("PaysWinsQuiet-v0", PaysWins, kwargs={"tell": ""})

    module.llamagym_register_envs = llamagym_register_envs
    if with_outcome_hook:
        @hookimpl
        def llamagym_episode_outcome(env_return):
            return "win" if env_return > 0 else "loss"

        module.llamagym_episode_outcome = llamagym_episode_outcome
    return module


def _evaluate(model_dir, env, *flags):
    result = invoke("eval", "--agent", "blackjack", "--env", env, "--model", model_dir, "--episodes", 24,
                    "--num-envs", 4, "-q", *flags)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_eval_counts_a_loss_that_pays_nothing_as_a_loss(tiny_model_dir, with_plugins):
    with_plugins(_pays_wins_plugin())
    truth = json.loads(_evaluate(tiny_model_dir, "Blackjack-v1", "--json"))  # pays +1 / 0 / -1
    told = json.loads(_evaluate(tiny_model_dir, "PaysWins-v0", "--json"))  # pays 1 / 0 / 0, info says which
    assert truth["loss_rate"] > 0 and truth["win_rate"] > 0
    rates = ("win_rate", "draw_rate", "loss_rate", "win_ci", "draw_ci", "loss_ci")
    assert {k: told[k] for k in rates} == {k: truth[k] for k in rates}
    assert told["mean_return"] == pytest.approx(truth["win_rate"])
    line = _evaluate(tiny_model_dir, "PaysWins-v0")
    assert f"loss {truth['loss_rate']:.3f}" in line and f"draw {truth['draw_rate']:.3f}" in line

    success = json.loads(_evaluate(tiny_model_dir, "PaysWinsSuccess-v0", "--json"))  # is_success: win or loss
    assert success["win_rate"] == truth["win_rate"] and success["draw_rate"] == 0
    assert success["loss_rate"] == pytest.approx(1 - truth["win_rate"])

    quiet = json.loads(_evaluate(tiny_model_dir, "PaysWinsQuiet-v0", "--json"))  # nothing says: the sign
    assert quiet["loss_rate"] == 0 and quiet["draw_rate"] == pytest.approx(1 - truth["win_rate"])


def test_a_plugin_says_the_outcome_where_the_env_does_not(tiny_model_dir, with_plugins):
    with_plugins(_pays_wins_plugin(with_outcome_hook=True))
    truth = json.loads(_evaluate(tiny_model_dir, "Blackjack-v1", "--json"))
    quiet = json.loads(_evaluate(tiny_model_dir, "PaysWinsQuiet-v0", "--json"))
    assert quiet["win_rate"] == truth["win_rate"] and quiet["draw_rate"] == 0
    assert quiet["loss_rate"] == pytest.approx(1 - truth["win_rate"])


def test_the_outcome_is_the_hooks_then_the_infos_then_the_sign(bare_pm):
    from llamagym.rollout.engine import episode_outcome

    agent = types.SimpleNamespace(plugin_manager=bare_pm)
    assert [episode_outcome(agent, r, {}) for r in (2.0, 0.0, -0.5)] == ["win", "draw", "loss"]
    assert episode_outcome(agent, 0.0, {"is_success": False}) == "loss"
    assert episode_outcome(agent, 0.0, {"is_success": True}) == "win"
    assert episode_outcome(agent, 1.0, {"outcome": "draw", "is_success": True}) == "draw"
    assert episode_outcome(agent, 1.0, {"outcome": "unknown"}) == "win"  # not an outcome: the next rule decides

    class ZeroLoses:
        @hookimpl
        def llamagym_episode_outcome(self, env_return, info):
            return "loss" if env_return == 0 else None

    bare_pm.register(ZeroLoses(), name="zero-loses")
    assert episode_outcome(agent, 0.0, {"outcome": "draw"}) == "loss"
    assert episode_outcome(agent, 1.0, {"outcome": "draw"}) == "draw"

    class Wrong:
        @hookimpl
        def llamagym_episode_outcome(self):
            return "victory"

    bare_pm.register(Wrong(), name="wrong")
    with pytest.raises(PluginError, match="'victory'.*win, draw, loss"):
        episode_outcome(agent, 0.0, {})


def test_episode_results_carry_their_outcome_and_conversation(tiny, bare_pm):
    from llamagym.agent.agent import Agent
    from llamagym.rollout.engine import EpisodeResult
    from llamagym.rollout.gym import RolloutEngine

    assert EpisodeResult(0, 1, 0.0, 0, 0).outcome is None  # positional construction keeps working

    class Hitter(Agent):
        def get_system_prompt(self): return "Say hit."
        def format_observation(self, observation): return f"total {observation[0]}"
        def extract_action(self, response): return 1

    model, tokenizer = tiny
    agent = Hitter(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm)
    engine = RolloutEngine(agent, lambda: PaysWins("outcome"), num_envs=2, seed=1)
    results = engine.run(6)
    assert {r.outcome for r in results} <= {"win", "draw", "loss"} and "loss" in {r.outcome for r in results}
    for result in results:
        messages = result.messages
        assert messages[0] == {"role": "system", "content": "Say hit."}
        assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * result.turns


# ---- conversations in episodes.jsonl ----------------------------------------------------------------------------

def run_args(model_dir, out, *flags, episodes=8):
    return ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", model_dir, "--episodes", episodes,
            "--num-envs", 4, "--batch-size", 4, "--mini-batch-size", 4, "--ppo-epochs", 1, "--max-new-tokens", 3,
            "--lora-r", 2, "-o", out, *flags]


def test_episodes_jsonl_records_each_conversation_and_loads_as_a_dataset(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, "-q"))
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    assert len(episodes) == 8
    for row in episodes:
        messages = row["messages"]
        assert messages[0]["role"] == "system" and set(messages[0]) == {"role", "content"}
        assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * row["turns"]
        assert messages[-1]["content"].startswith("My answer:")
    dataset = load_as_dataset(out / "episodes.jsonl")
    assert len(dataset) == 8 and dataset[3]["messages"] == episodes[3]["messages"]
    feature = dataset.features["messages"]  # a list of {role, content} strings, not schema-less JSON
    inner = feature[0] if isinstance(feature, list) else feature.feature
    assert {name: value.dtype for name, value in inner.items()} == {"role": "string", "content": "string"}


def test_a_share_of_conversations_is_recorded_by_episode_index(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, "-q", "--record-conversations", "0.5"))
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    assert sorted(row["episode"] for row in episodes) == list(range(8))  # rows come in the order episodes end
    assert [bool(row["messages"]) for row in episodes] == [row["episode"] % 2 == 0 for row in episodes]
    dataset = load_as_dataset(out / "episodes.jsonl")
    assert [len(m) for m in dataset["messages"]] == [len(row["messages"]) for row in episodes]
    assert json.loads((out / "config.json").read_text())["config"]["record_conversations"] == 0.5

    none = tmp_path / "none"
    assert invoke(*run_args(tiny_model_dir, none, "-q", "--record-conversations", "0")).exit_code == 0
    assert all(row["messages"] == [] for row in rows(none / "episodes.jsonl"))
    bad = invoke(*run_args(tiny_model_dir, tmp_path / "bad", "-q", "--record-conversations", "1.5"))
    assert bad.exit_code == 2 and "record_conversations must be at most 1.0" in bad.output


def test_a_game_row_maps_every_seat_to_the_main_policys_conversation(tiny_model_dir, tmp_path):
    out = tmp_path / "game"
    result = invoke("run", "--agent", "tictactoe", "--env", "tictactoe_v3", "--model", tiny_model_dir,
                    "--episodes", 4, "--num-envs", 2, "--batch-size", 2, "--mini-batch-size", 2, "--ppo-epochs", 1,
                    "--max-new-tokens", 2, "--lora-r", 2, "--play", "opponent", "--opponent", "random", "-o", out,
                    "-q")
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    assert len(episodes) == 4
    for index, row in enumerate(episodes):
        messages = row["messages"]
        assert sorted(messages) == ["player_1", "player_2"]
        mine = ["player_1", "player_2"][row["episode"] % 2]  # the learner alternates seats; random plays the other
        other = ({"player_1", "player_2"} - {mine}).pop()
        assert messages[other] == [] and messages[mine][0]["role"] == "system"
        assert sum(m["role"] == "assistant" for m in messages[mine]) == row["turns"]
    dataset = load_as_dataset(out / "episodes.jsonl")
    assert dataset[1]["messages"] == episodes[1]["messages"]


def test_collect_output_loads_as_a_dataset(tiny_model_dir, tmp_path):
    out = tmp_path / "expert.jsonl"
    result = invoke("collect", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tiny_model_dir,
                    "--policy", "expert", "--episodes", 12, "--num-envs", 4, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    dataset = load_as_dataset(out)
    assert len(dataset) == 12 and dataset[0]["messages"] == rows(out)[0]["messages"]
    assert {"agent", "env", "policy", "index", "seed", "return", "turns", "invalid_turns"} <= set(dataset.features)


# ---- the progress bar during an update ------------------------------------------------------------------------

class FakeClock:
    """Real time plus the seconds the test's updates "take"."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset


def test_the_bar_shows_the_update_as_a_phase_and_ends_on_the_right_count(tiny_model_dir, tmp_path, monkeypatch):
    from tqdm.std import tqdm as std_tqdm

    import llamagym.run.recorder as recorder
    from llamagym.algo.trainer import PPOTrainer

    clock, bars = FakeClock(), []

    class Bar(std_tqdm):
        def __init__(self, *args, **kwargs):
            self.shown, self.seconds_per_episode = [], []
            super().__init__(*args, **{**kwargs, "file": io.StringIO(), "mininterval": 0})
            self._time = clock
            self.start_t = self.last_print_t = clock()
            bars.append(self)

        def refresh(self, *args, **kwargs):
            self.shown.append(self.postfix or "")
            return super().refresh(*args, **kwargs)

        def update(self, n=1):
            super().update(n)
            rate = self.format_dict["rate"]
            if rate:
                self.seconds_per_episode.append(1 / rate)

    seen_in_update = []
    real_step = PPOTrainer.step

    def slow_step(self, episodes):
        seen_in_update.append(bars[0].postfix)
        clock.offset += 1000.0  # an update that takes 1000 s
        return real_step(self, episodes)

    monkeypatch.setattr(recorder, "tqdm", Bar)
    monkeypatch.setattr(PPOTrainer, "step", slow_step)
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, "--ppo-epochs", 2, episodes=12))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] == 3
    bar = bars[0]
    assert all("updating" in postfix for postfix in seen_in_update) and len(seen_in_update) == 3
    assert any("updating (epoch 1/2)" in shown for shown in bar.shown)
    assert any("updating (epoch 2/2)" in shown for shown in bar.shown)
    assert "updates=3" in bar.postfix and "updating" not in bar.postfix  # the final count, no phase left
    assert bar.format_dict["elapsed"] >= 3000  # the bar's clock is wall time, updates included
    assert bar.seconds_per_episode and max(bar.seconds_per_episode) < 100  # ...but the rate is the episodes'


# ---- the episodes column of a game run counts games, as summary.json does --------------------------------------

@pytest.mark.parametrize("play", [["--play", "selfplay", "--pool-size", 0], ["--play", "separate"],
                                  ["--play", "opponent", "--opponent", "random"]])
def test_a_game_runs_metrics_count_games_as_its_summary_does(tiny_model_dir, tmp_path, play):
    out = tmp_path / "game"
    result = invoke("run", "--agent", "tictactoe", "--env", "tictactoe_v3", "--model", tiny_model_dir,
                    "--episodes", 5, "--num-envs", 2, "--batch-size", 2, "--mini-batch-size", 2, "--ppo-epochs", 1,
                    "--max-new-tokens", 2, "--lora-r", 2, *play, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    games = json.loads((out / "summary.json").read_text())["episodes"]
    assert games == 5 == len(rows(out / "episodes.jsonl"))
    counted = [row["episodes"] for row in rows(out / "metrics.jsonl") if "policy" not in row]  # the main policy's
    assert counted == sorted(counted) and counted[-1] == games, counted
    assert all(count <= games for row in rows(out / "metrics.jsonl") for count in [row["episodes"]])
