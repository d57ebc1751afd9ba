"""The policy's exact score (`llamagym_score_policy`): Blackjack's scorer values a policy table exactly, leaves the
agent as it found it, and `llamagym run` / `llamagym eval` print it before and after training."""

import json

import pytest
from click.testing import CliRunner

from llamagym.cli import cli
from llamagym.run.scoring import describe
from llamagym_blackjack.scoring import greedy_table, reference_returns, score
from llamagym_blackjack.strategy import policy_return, stick_on_17


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def _run_args(model_dir, out, episodes=8, *extra):
    return ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", model_dir, "--episodes", episodes,
            "--num-envs", 4, "--batch-size", 4, "--mini-batch-size", 4, "--ppo-epochs", 1, "--max-new-tokens", 3,
            "--lora-r", 2, "-o", out, "-q", *extra]


def test_the_reference_values_are_the_known_ones():
    refs = reference_returns()
    assert refs["basic strategy"] == pytest.approx(-0.0466, abs=1e-4)
    assert refs["stick on 17+"] == pytest.approx(policy_return(lambda o: float(stick_on_17(o))))
    assert refs["random"] < refs["always stick"] < refs["stick on 17+"] < refs["basic strategy"]


class _Scripted:
    """Stands in for a blackjack agent: answers a table, and must be left as it was."""

    def __init__(self, policy):
        self.policy, self.generation = policy, type("G", (), {"do_sample": True, "constrained": False})()
        self.conversations, self.state = {}, {"rng": 1, "counters": {"turns": 0}}

    def state_dict(self):
        return json.loads(json.dumps(self.state))

    def load_state_dict(self, state):
        self.state = state

    def act_batch(self, observations):
        assert self.generation.do_sample is False  # greedy while scored
        self.state["counters"]["turns"] += len(observations)
        self.conversations.update(observations)
        return {slot: self.policy(o) for slot, o in observations.items()}

    def current_episode(self, slot):
        return type("E", (), {"turns": [type("T", (), {"valid": True})()]})()

    def end_episode(self, slot):
        self.conversations.pop(slot)


def test_scoring_a_policy_table_is_exact_and_leaves_the_agent_as_it_was():
    agent = _Scripted(stick_on_17)
    result = score(agent)
    assert result.expected_return == pytest.approx(reference_returns()["stick on 17+"])
    assert agent.state == {"rng": 1, "counters": {"turns": 0}} and agent.generation.do_sample is True
    assert not agent.conversations and len(greedy_table(agent)) == 280
    assert "of the 280 observations" in result.detail


def test_describe_says_before_after_and_the_gain():
    before = {"expected_return": -0.19, "references": {"basic strategy": -0.0466}, "detail": "agrees in 40%"}
    after = {**before, "expected_return": -0.06}
    lines = describe(before, after)
    assert lines[0] == ("exact return of the greedy policy: -0.1900 before training, -0.0600 after (+0.1300)")
    assert lines[1] == "references: basic strategy -0.0466"
    assert describe(None, None) == [] and describe(None, after)[0].endswith("-0.0600")
    sampled = describe({**before, "sampled_return": -0.24}, {**after, "sampled_return": -0.18})
    assert sampled[1] == "exact return of the sampling policy: -0.2400 before training, -0.1800 after (+0.0600)"


def test_run_prints_the_score_before_and_after_and_a_resume_keeps_before(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(*_run_args(tiny_model_dir, out))
    assert result.exit_code == 0, result.output
    assert "exact return of the greedy policy:" in result.output and "before training" in result.output
    assert "references: random" in result.output
    summary = json.loads((out / "summary.json").read_text())
    before = summary["policy_score"]["before"]["expected_return"]
    resumed = invoke("run", "--resume", out, "--episodes", 12, "-q")
    assert resumed.exit_code == 0, resumed.output
    again = json.loads((out / "summary.json").read_text())["policy_score"]
    assert again["before"]["expected_return"] == before  # the run's start, not the resume's


def test_score_policy_off_and_other_envs_print_nothing(tiny_model_dir, tmp_path):
    result = invoke(*_run_args(tiny_model_dir, tmp_path / "off", 4, "--no-score-policy"))
    assert result.exit_code == 0, result.output
    assert "exact return" not in result.output
    assert "policy_score" not in json.loads((tmp_path / "off" / "summary.json").read_text())


def test_eval_reports_the_exact_score(tiny_model_dir):
    result = invoke("eval", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tiny_model_dir,
                    "--episodes", 4, "--num-envs", 2, "--json", "-q")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert -1.0 <= payload["policy_score"]["expected_return"] <= 1.0
