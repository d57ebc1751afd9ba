"""The QA plugin and the local judge: verdict parsing, a judge model llamagym loads, the JSONL environment, and
runs through the command line on the tiny model, judged locally and over HTTP, with a judge that fails."""

from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner

import llamagym
from llamagym.cli import cli
from llamagym.errors import ConfigError, JudgeError
from llamagym.judging import (Judge, JudgeTimeoutError, LocalJudge, MalformedVerdictError, Verdict,
                              judge_from_environment, judge_messages, parse_verdict)
from llamagym_qa import plugin
from llamagym_qa.agent import QAAgent
from llamagym_qa.env import SAMPLE, QAEnv, load_questions

from servers import completion, free_port, scripted_server


class Scripted(Judge):
    """A judge whose verdict is fixed by the answer: correct when it equals the reference."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def verdict(self, question, answer, reference=None):
        self.calls.append((question, answer, reference))
        return Verdict(float(answer.strip().lower() == (reference or "").lower()), "scripted")


# ---- verdicts -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "score"), [("correct", 1.0), ("CORRECT.", 1.0), ("incorrect", 0.0),
                                             ("No, that is wrong", 0.0), ("yes", 1.0), ("not right", 0.0),
                                             ("8/10", 0.8), ("Score: 3", 0.3), ("score=0.25", 0.25)])
def test_parse_verdict(text, score):
    assert parse_verdict(text).score == pytest.approx(score)


@pytest.mark.parametrize("text", ["", "hmm", "12/10", "Paris"])
def test_an_answer_that_is_no_verdict_raises_in_one_line(text):
    with pytest.raises(MalformedVerdictError) as raised:
        parse_verdict(text, "judge 'x'")
    assert "\n" not in str(raised.value) and "judge 'x'" in str(raised.value)


def test_the_judge_reads_question_reference_and_answer():
    system, user = judge_messages("Capital of France?", "Paris", "Paris")
    assert "correct or incorrect" in system["content"]
    assert user["content"].splitlines() == ["Question: Capital of France?", "Reference answer: Paris",
                                            "Answer to grade: Paris", "Is the answer correct or incorrect?"]
    assert "Reference" not in judge_messages("q", "")[1]["content"]
    assert "(no answer)" in judge_messages("q", "")[1]["content"]


def test_reward_maps_the_score_onto_the_judges_range():
    judge = Scripted()
    judge.correct_reward, judge.incorrect_reward = 2.0, -1.0
    assert judge.reward("q", "a", "a") == 2.0 and judge.reward("q", "b", "a") == -1.0


# ---- the local judge ------------------------------------------------------------------------------------------

def test_a_local_judge_loads_a_model_and_scores_the_two_verdict_words(llamagym_tiny_model_dir):
    judge = LocalJudge(str(llamagym_tiny_model_dir))
    verdict = judge.verdict("What is 2 + 2?", "4", reference="4")
    assert verdict.score in (0.0, 1.0) and verdict.text.split()[0] in ("correct", "incorrect")
    graded = LocalJudge(str(llamagym_tiny_model_dir), graded=True)
    probability = graded.verdict("What is 2 + 2?", "4", reference="4").score
    assert 0.0 < probability < 1.0 and verdict.score == float(probability >= 0.5)
    correct, incorrect = judge.verdict_log_probs(judge_messages("q", "a"))
    assert correct < 0 and incorrect < 0 and correct != incorrect


def test_a_local_judge_follows_the_likelier_word(llamagym_tiny_model_dir, monkeypatch):
    judge = LocalJudge(str(llamagym_tiny_model_dir))
    monkeypatch.setattr(judge, "verdict_log_probs", lambda messages: (-1.0, -3.0))
    assert judge.reward("q", "a") == 1.0
    monkeypatch.setattr(judge, "verdict_log_probs", lambda messages: (-3.0, -1.0))
    assert judge.reward("q", "a") == 0.0


def test_a_local_judge_over_its_timeout_raises(llamagym_tiny_model_dir):
    judge = LocalJudge(str(llamagym_tiny_model_dir), timeout=1e-9)
    with pytest.raises(JudgeTimeoutError) as raised:
        judge.verdict("q", "a")
    assert "over its timeout" in str(raised.value) and "\n" not in str(raised.value)


def test_an_unknown_local_model_is_a_one_line_error(tmp_path):
    with pytest.raises(llamagym.UsageError) as raised:
        LocalJudge(str(tmp_path / "missing.gguf")).verdict("q", "a")
    assert "\n" not in str(raised.value)


def test_the_environment_chooses_a_local_judge_by_default():
    judge = judge_from_environment({})
    assert isinstance(judge, LocalJudge) and judge.model_name == "default" and not judge.graded
    judge = judge_from_environment({"LLAMAGYM_JUDGE_MODEL": "m", "LLAMAGYM_JUDGE_GRADED": "1"})
    assert judge.model_name == "m" and judge.graded
    with pytest.raises(ConfigError, match="LLAMAGYM_JUDGE_TIMEOUT"):
        judge_from_environment({"LLAMAGYM_JUDGE_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="unknown judge setting LLAMAGYM_JUDGE_URLL"):
        judge_from_environment({"LLAMAGYM_JUDGE_URLL": "x"})


@pytest.mark.slow
def test_the_default_model_judges_offline():
    """The embedded SmolLM2-135M as judge: it loads with no network and gives a verdict for each answer."""
    judge = LocalJudge("default", graded=True)
    scores = [judge.reward("What is the capital of France?", answer, "Paris") for answer in ("Paris", "Banana")]
    assert all(0.0 < score < 1.0 for score in scores)


# ---- the environment and the agent -----------------------------------------------------------------------------

def test_the_plugin_registers_the_agent_and_env(llamagym_plugin_manager):
    llamagym_plugin_manager.register(plugin, name="qa")
    from llamagym.plugins.registry import Registry

    registry = Registry(llamagym_plugin_manager)
    assert registry.agent("qa").load() is QAAgent and registry.env("QA-v0").make().__class__ is QAEnv


def test_the_sample_file_loads_and_a_bad_line_is_named(tmp_path):
    pairs = load_questions(SAMPLE)
    assert len(pairs) >= 10 and ("What is the capital of France?", "Paris") in pairs
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n\n{"question": "no answer"}\n')
    with pytest.raises(ConfigError) as raised:
        load_questions(bad)
    assert f"{bad}:3 " in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ConfigError, match="does not exist"):
        QAEnv(path=tmp_path / "missing.jsonl")


def test_the_env_rewards_the_judges_verdict(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "2 + 2?", "answer": "4"}) + "\n")
    judge = Scripted()
    env = QAEnv(path=path, judge=judge)
    question, info = env.reset(seed=0)
    assert question == "2 + 2?" and info == {"question_index": 0}
    _, reward, terminated, truncated, info = env.step("4")
    assert (reward, terminated, truncated, info["is_success"], info["reference"]) == (1.0, True, False, True, "4")
    env.reset(seed=1)
    assert env.step("5")[1] == 0.0 and judge.calls[-1] == ("2 + 2?", "5", "4")


def test_a_judge_that_fails_fails_the_step():
    class Broken(Judge):
        def verdict(self, question, answer, reference=None):
            raise MalformedVerdictError("judge said 'maybe'")

    env = QAEnv(judge=Broken())
    env.reset(seed=0)
    with pytest.raises(JudgeError, match="maybe"):
        env.step("Paris")


def test_the_env_passes_gymnasiums_checker():
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(QAEnv(judge=Scripted()))


def test_the_qa_file_variable_picks_the_questions(tmp_path, monkeypatch):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "Mine?", "answer": "yes"}) + "\n")
    monkeypatch.setenv("LLAMAGYM_QA_FILE", str(path))
    assert llamagym.make_env("QA-v0").reset(seed=0)[0] == "Mine?"


def test_the_path_kwarg_wins_over_the_qa_file_variable(tmp_path, monkeypatch):
    mine, theirs = tmp_path / "mine.jsonl", tmp_path / "theirs.jsonl"
    mine.write_text(json.dumps({"question": "Mine?", "answer": "yes"}) + "\n")
    theirs.write_text(json.dumps({"question": "Theirs?", "answer": "no"}) + "\n")
    monkeypatch.setenv("LLAMAGYM_QA_FILE", str(theirs))
    assert llamagym.make_env("QA-v0", path=str(mine)).reset(seed=0)[0] == "Mine?"


@pytest.mark.parametrize("settings, expected", [
    ({"url": "http://kwarg:1/v1", "model": "m", "timeout": 5}, ("http://kwarg:1/v1", "m", 5.0)),
    ({"model": "from-kwarg"}, ("http://variable:2/v1", "from-kwarg", 30.0)),
    ({"timeout": 2.5, "api_key_env": ""}, ("http://variable:2/v1", "variable-model", 2.5)),
])
def test_judge_settings_as_a_kwarg_win_over_the_judge_variables(monkeypatch, settings, expected):
    from llamagym.judging import OpenAIJudge

    monkeypatch.setenv("LLAMAGYM_JUDGE_URL", "http://variable:2/v1")
    monkeypatch.setenv("LLAMAGYM_JUDGE_MODEL", "variable-model")
    env = llamagym.make_env("QA-v0", judge=settings)
    assert env.judge is None  # built at the first answer
    judge = env._judge()
    assert isinstance(judge, OpenAIJudge) and (judge.base_url, judge.model, judge.timeout) == expected


def test_an_unknown_judge_setting_is_named_when_the_env_is_made():
    with pytest.raises(ConfigError, match="QA-v0's judge has no setting 'urll'; its settings: url, model"):
        QAEnv(judge={"urll": "http://x/v1"})


def test_the_agent_reads_one_line(llamagym_tiny):
    model, tokenizer = llamagym_tiny
    agent = QAAgent(model, tokenizer, "cpu")
    assert agent.extract_action("Answer: Paris\nand more") == "Paris"
    assert agent.extract_action("Answer:  the blue whale ") == "the blue whale"
    with pytest.raises(llamagym.ActionParseError):
        agent.extract_action("Answer:   ")
    assert agent.format_observation("Why?") == "Question: Why?"


# ---- whole runs, as a user starts them --------------------------------------------------------------------------

def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(map(str, args)), env=env)


def run_args(model_dir, out, *extra):
    return ["run", "--agent", "qa", "--env", "QA-v0", "--model", model_dir, "--episodes", 8, "--num-envs", 4,
            "--batch-size", 4, "--mini-batch-size", 4, "--ppo-epochs", 1, "--max-new-tokens", 4, "--lora-r", 2,
            "-o", out, "-q", *extra]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_judged_by_a_local_model(llamagym_tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(*run_args(llamagym_tiny_model_dir, out),
                    env={"LLAMAGYM_JUDGE_MODEL": str(llamagym_tiny_model_dir), "LLAMAGYM_JUDGE_URL": None})
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    assert len(episodes) == 8 and all(e.get("error") is None for e in episodes)
    assert all(e["return"] in (0.0, 1.0) for e in episodes)
    assert rows(out / "metrics.jsonl")


def test_a_run_and_an_eval_judged_over_http(llamagym_tiny_model_dir, tmp_path):
    with scripted_server(lambda request, headers: (200, completion("correct"), 0.0)) as (base, received):
        out = tmp_path / "run"
        result = invoke(*run_args(llamagym_tiny_model_dir, out), env={"LLAMAGYM_JUDGE_URL": base})
        assert result.exit_code == 0, result.output
        assert [e["return"] for e in rows(out / "episodes.jsonl")] == [1.0] * 8 and len(received) == 8
        result = invoke("eval", "--checkpoint", out, "--episodes", 4, env={"LLAMAGYM_JUDGE_URL": base})
        assert result.exit_code == 0, result.output
    assert len(received) == 12


def test_a_run_given_its_questions_and_judge_by_env_kwargs(llamagym_tiny_model_dir, tmp_path):
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": f"Q{i}?", "answer": "a"}) + "\n" for i in range(3)))
    with scripted_server(lambda request, headers: (200, completion("correct"), 0.0)) as (base, received):
        out = tmp_path / "run"
        result = invoke(*run_args(llamagym_tiny_model_dir, out), "--env-kwarg", f"path={questions}",
                        "--env-kwarg", f'judge={{url = "{base}", model = "kwarg-judge"}}',
                        env={"LLAMAGYM_JUDGE_URL": "http://127.0.0.1:9/v1", "LLAMAGYM_QA_FILE": None})
        assert result.exit_code == 0, result.output
        assert len(received) == 8 and all(r["json"]["model"] == "kwarg-judge" for r in received)
        assert {e["messages"][1]["content"] for e in rows(out / "episodes.jsonl")} <= {f"Question: Q{i}?"
                                                                                   for i in range(3)}
        result = invoke("eval", "--checkpoint", out, "--episodes", 2, env={"LLAMAGYM_JUDGE_URL": None})
        assert result.exit_code == 0, result.output  # the run's kwargs: the same questions and judge
    assert len(received) == 10


def test_a_judge_that_is_down_drops_episodes_and_stops_the_run_in_one_line(llamagym_tiny_model_dir, tmp_path,
                                                                          caplog):
    base = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "run"
    result = invoke(*run_args(llamagym_tiny_model_dir, out, "--max-env-errors", 3),
                    env={"LLAMAGYM_JUDGE_URL": base})
    assert result.exit_code != 0
    last = result.output.strip().splitlines()[-1]
    assert "3 environment errors in a row" in last and "cannot be reached" in last and base in last
    assert "Traceback" not in result.output
    dropped = [r for r in caplog.records if "the episode is dropped" in r.getMessage()]
    assert len(dropped) == 3 and "cannot be reached" in dropped[0].getMessage()


def test_malformed_verdicts_drop_their_episodes_and_the_rest_train(llamagym_tiny_model_dir, tmp_path, caplog):
    answers = iter(["correct", "maybe", "incorrect", "hmm"] * 4)
    with scripted_server(lambda request, headers: (200, completion(next(answers)), 0.0)) as (base, _):
        out = tmp_path / "run"
        result = invoke(*run_args(llamagym_tiny_model_dir, out), env={"LLAMAGYM_JUDGE_URL": base})
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    errors = [e for e in episodes if e.get("error")]
    assert len(episodes) == 8 and len(errors) == 4 and all("no verdict" in e["error"] for e in errors)
    assert sorted(e["return"] for e in episodes if not e.get("error")) == [0.0, 0.0, 1.0, 1.0]
