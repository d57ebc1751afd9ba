"""LLM-judged rewards: a judge model reads a question, an answer (and a reference answer, if there is one) and
gives a verdict; `Judge.reward` turns the verdict into a reward.

    from llamagym.judging import LocalJudge, OpenAIJudge, judge_from_environment

    judge = LocalJudge("default")                                    # a Hugging Face model llamagym loads
    judge = OpenAIJudge("http://localhost:8080/v1", "my-model")      # any OpenAI-compatible server
    reward = judge.reward("What is 2 + 2?", "4", reference="4")      # 1.0 for "correct", 0.0 for "incorrect"

Every failure (a server that is down, a timeout, an answer that holds no verdict) raises `JudgeError`, one line
naming the judge and what to do; raised from an environment's `step`, it drops that episode (logged) rather than
paying a reward of 0. Nothing here imports torch until a local judge is built.

- `prompt.py`   the messages a judge reads, and the verdict words it answers with
- `verdict.py`  `Verdict` and `parse_verdict`: a judge's text to a score, or a JudgeError
- `judge.py`    `Judge`: the base class (verdict -> reward), and the JudgeError subclasses
- `local.py`    `LocalJudge`: a model loaded by `llamagym.policy.models.load_model`, scored on its verdict words
- `endpoint.py` `OpenAIJudge`: chat completions from any OpenAI-compatible server, with a timeout
- `settings.py` `judge_from_environment`: the judge the LLAMAGYM_JUDGE_* variables describe
"""

from __future__ import annotations

from llamagym.errors import JudgeError
from llamagym.lazy import lazy_exports

_LAZY = {
    "Judge": "llamagym.judging.judge",
    "JudgeTimeoutError": "llamagym.judging.judge",
    "JudgeUnreachableError": "llamagym.judging.judge",
    "MalformedVerdictError": "llamagym.judging.judge",
    "Verdict": "llamagym.judging.verdict",
    "parse_verdict": "llamagym.judging.verdict",
    "judge_messages": "llamagym.judging.prompt",
    "LocalJudge": "llamagym.judging.local",
    "OpenAIJudge": "llamagym.judging.endpoint",
    "judge_from_environment": "llamagym.judging.settings",
}

__all__ = ["JudgeError", *_LAZY]

__getattr__ = lazy_exports(__name__, _LAZY)
