"""`QAEnv`: one question per episode, from a JSONL file of {"question": ..., "answer": ...} lines; the agent's
answer is graded by a judge (`llamagym.judging`), whose verdict is the reward. A judge that gives no verdict
raises a `JudgeError` from `step`: llamagym logs it and drops the episode, it never pays 0 for it."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

import gymnasium
from gymnasium import spaces

from llamagym.errors import ConfigError

SAMPLE = Path(__file__).with_name("data") / "sample.jsonl"
FILE_VARIABLE = "LLAMAGYM_QA_FILE"
# printable ASCII and Latin-1's letters; any other character of a question is shown as "?"
CHARSET = frozenset(string.printable) | frozenset(chr(c) for c in range(0xA0, 0x180))
MAX_ANSWER = 500  # characters of an answer the env accepts (its action space)
MAX_QUESTION = 2000


def load_questions(path: str | Path) -> list[tuple[str, str]]:
    """(question, reference answer) pairs from a JSONL file; a line that is not such an object is a one-line
    ConfigError naming the file and the line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"QA file {str(path)!r} does not exist; point {FILE_VARIABLE} at a JSONL file of "
                          f'{{"question": ..., "answer": ...}} lines')
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, answer = row["question"], row["answer"]
            if not isinstance(question, str) or not question.strip():
                raise ValueError("empty question")
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number} is not a JSON object with a 'question' and an 'answer' ({exc})"
                              ) from None
        pairs.append((clean(question), str(answer)))
    if not pairs:
        raise ConfigError(f"QA file {str(path)!r} holds no questions")
    return pairs


def clean(text: str, limit: int = MAX_QUESTION) -> str:
    return "".join(c if c in CHARSET else "?" for c in text)[:limit]


def judge_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Judge settings given as the env's `judge` kwarg, checked now (the judge itself is built at the first
    answer)."""
    from llamagym.judging.settings import PREFIX, SETTINGS

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"QA-v0's judge has no setting {unknown[0]!r}; its settings: {', '.join(SETTINGS)} (as "
                          f"the {PREFIX}* variables name them)")
    return dict(settings)


class QAEnv(gymnasium.Env):
    """Observation: the question (text). Action: the answer (text). Reward: the judge's verdict (1 correct, 0
    incorrect by default); the episode ends after one answer. `judge` is a `llamagym.judging.Judge`, or a dict of
    judge settings (url, model, api_key_env, timeout, graded) that win over the LLAMAGYM_JUDGE_* variables (None:
    the judge the variables describe); a judge from settings is built at the first answer. `path` is a JSONL file
    (None: $LLAMAGYM_QA_FILE, else the shipped sample)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, path: str | Path | None = None, judge: Any = None, max_answer_chars: int = MAX_ANSWER):
        self.path = Path(path or os.environ.get(FILE_VARIABLE) or SAMPLE)
        self.questions = load_questions(self.path)
        self.judge_settings = judge_settings(judge) if isinstance(judge, dict) else {}
        self.judge = None if isinstance(judge, dict) else judge
        self.observation_space = spaces.Text(max_length=MAX_QUESTION, charset=CHARSET)
        self.action_space = spaces.Text(max_length=max_answer_chars, charset=CHARSET)
        self._index = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._index = int(self.np_random.integers(len(self.questions)))
        return self.questions[self._index][0], {"question_index": self._index}

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        question, reference = self.questions[self._index]
        verdict = self._judge().verdict(question, str(action), reference)
        judge = self._judge()
        reward = judge.incorrect_reward + verdict.score * (judge.correct_reward - judge.incorrect_reward)
        info = {"verdict": verdict.text, "score": verdict.score, "is_success": verdict.correct,
                "reference": reference}
        return question, float(reward), True, False, info

    def _judge(self) -> Any:
        if self.judge is None:
            from llamagym.judging import judge_from_environment

            self.judge = judge_from_environment(**self.judge_settings)
        return self.judge

    def close(self) -> None:
        if self.judge is not None:
            self.judge.close()
