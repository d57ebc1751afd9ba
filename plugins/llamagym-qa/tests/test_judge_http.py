"""The OpenAI-compatible judge over real HTTP on localhost: verdicts, the request it sends, and every failure mode
(server down, timeout, HTTP errors, a reply that is no completion, an answer that is no verdict) as one line."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from llamagym.errors import JudgeError
from llamagym.judging import (JudgeTimeoutError, JudgeUnreachableError, MalformedVerdictError, OpenAIJudge,
                              judge_from_environment)

from servers import completion, free_port, llama_cpp_server, scripted_server


def says(content: str, status: int = 200, delay: float = 0.0):
    return lambda request, headers: (status, completion(content) if status == 200 else content.encode(), delay)


@pytest.mark.parametrize(("content", "score"), [("correct", 1.0), ("Incorrect.", 0.0), ("Verdict: CORRECT", 1.0),
                                                ("The answer is not correct", 0.0), ("7/10", 0.7)])
def test_a_verdict_over_http_becomes_the_reward(content, score):
    with scripted_server(says(content)) as (base, received):
        judge = OpenAIJudge(base, "grader", api_key_env=None, timeout=5)
        assert judge.reward("What is 2 + 2?", "4", reference="4") == pytest.approx(score)
    request = received[0]
    assert request["path"] == "/v1/chat/completions"
    body = request["json"]
    assert body["model"] == "grader" and body["temperature"] == 0.0
    assert body["messages"][0]["role"] == "system" and "Reference answer: 4" in body["messages"][1]["content"]
    assert "Answer to grade: 4" in body["messages"][1]["content"]


def test_the_key_is_read_from_the_named_variable_and_extra_fields_are_sent(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sekret")
    with scripted_server(says("correct")) as (base, received):
        judge = OpenAIJudge(base, "grader", api_key_env="MY_JUDGE_KEY", extra_body={"grammar": "root ::= \"x\""})
        judge.verdict("q", "a")
    assert received[0]["headers"]["Authorization"] == "Bearer sekret"
    assert received[0]["json"]["grammar"] == "root ::= \"x\""
    monkeypatch.delenv("MY_JUDGE_KEY")
    with scripted_server(says("correct")) as (base, received):
        OpenAIJudge(base, "grader", api_key_env="MY_JUDGE_KEY").verdict("q", "a")
    assert "Authorization" not in received[0]["headers"]


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and message
    return message


def test_a_server_that_is_down_is_a_one_line_error():
    base = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(JudgeUnreachableError) as raised:
        OpenAIJudge(base, "grader", timeout=5).verdict("q", "a")
    message = one_line(raised.value)
    assert "cannot be reached" in message and base in message and "LLAMAGYM_JUDGE_URL" in message


def test_a_slow_server_times_out_in_one_line():
    with scripted_server(says("correct", delay=2.0)) as (base, _):
        start = time.monotonic()
        with pytest.raises(JudgeTimeoutError) as raised:
            OpenAIJudge(base, "grader", timeout=0.3).verdict("q", "a")
        assert time.monotonic() - start < 1.5
    assert "did not answer within 0.3s" in one_line(raised.value)


@pytest.mark.parametrize(("status", "hint"), [(401, "check the API key in $OPENAI_API_KEY"),
                                              (404, "should end in /v1"), (500, "HTTP 500")])
def test_http_errors_name_the_status_and_what_to_check(status, hint):
    with scripted_server(says('{"error": "nope"}', status=status)) as (base, _):
        with pytest.raises(JudgeUnreachableError) as raised:
            OpenAIJudge(base, "grader").verdict("q", "a")
    message = one_line(raised.value)
    assert f"HTTP {status}" in message and hint in message and "nope" in message


def test_a_reply_that_is_no_chat_completion_is_malformed():
    with scripted_server(lambda request, headers: (200, b"<html>hello</html>", 0.0)) as (base, _):
        with pytest.raises(MalformedVerdictError) as raised:
            OpenAIJudge(base, "grader").verdict("q", "a")
    assert "no chat completion" in one_line(raised.value)
    with scripted_server(lambda request, headers: (200, json.dumps({"choices": []}).encode(), 0.0)) as (base, _):
        with pytest.raises(MalformedVerdictError):
            OpenAIJudge(base, "grader").verdict("q", "a")


def test_an_answer_without_a_verdict_is_malformed_never_a_zero():
    with scripted_server(says("Let me think about it...")) as (base, _):
        judge = OpenAIJudge(base, "grader")
        with pytest.raises(MalformedVerdictError) as raised:
            judge.reward("q", "a")
    message = one_line(raised.value)
    assert "'Let me think about it...'" in message and "no verdict" in message
    assert issubclass(MalformedVerdictError, JudgeError)


def test_the_environment_variables_choose_the_http_judge(monkeypatch):
    with scripted_server(says("correct")) as (base, received):
        judge = judge_from_environment({"LLAMAGYM_JUDGE_URL": base, "LLAMAGYM_JUDGE_MODEL": "m",
                                        "LLAMAGYM_JUDGE_TIMEOUT": "3", "LLAMAGYM_JUDGE_API_KEY_ENV": ""})
        assert isinstance(judge, OpenAIJudge) and judge.timeout == 3.0 and judge.api_key_env is None
        assert judge.reward("q", "a") == 1.0
    assert received[0]["json"]["model"] == "m"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python[server]")
def test_llama_cpp_server_on_the_embedded_model_judges_over_http():
    """A real OpenAI-compatible server: llama.cpp's, on the embedded SmolLM2 GGUF. Its grammar restricts the answer
    to the two verdict words, so every reply is a verdict."""
    with llama_cpp_server() as base:
        judge = OpenAIJudge(base, "smollm2", api_key_env=None, timeout=60,
                            extra_body={"grammar": 'root ::= "correct" | "incorrect"'})
        scores = [judge.reward("What is the capital of France?", answer, reference="Paris")
                  for answer in ("Paris", "Berlin")]
        assert all(score in (0.0, 1.0) for score in scores)
        free = OpenAIJudge(base, "smollm2", api_key_env=None, timeout=60, max_tokens=4)
        text = free.complete([{"role": "user", "content": "Say hello."}])
        assert isinstance(text, str)
        with pytest.raises(JudgeTimeoutError):
            OpenAIJudge(base, "smollm2", api_key_env=None, timeout=0.001, max_tokens=64).complete(
                [{"role": "user", "content": "Write a long story about a cat."}])
