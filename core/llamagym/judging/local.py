"""`LocalJudge`: a causal LM that llamagym loads (`llamagym.policy.models.load_model`: "default", the embedded
SmolLM2-135M, works offline; or a Hugging Face id, a directory, a .gguf file). It never generates free text: it
scores the two verdict words after "Verdict:" and takes the likelier (or, with `graded=True`, the probability of
"correct"), so its verdict is never malformed. The model is loaded on first use and kept."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

from llamagym.judging.judge import Judge, JudgeTimeoutError
from llamagym.judging.prompt import CORRECT, INCORRECT, RUBRIC, VERDICT_PREFIX, judge_messages
from llamagym.judging.verdict import Verdict


class LocalJudge(Judge):
    """A local model as judge. `timeout` (seconds, None: none) bounds each verdict: a forward pass cannot be
    interrupted, so a verdict that took longer is refused with a JudgeTimeoutError rather than slowing a run
    unnoticed."""

    def __init__(self, model: str = "default", *, graded: bool = False, rubric: str = RUBRIC,
                 timeout: float | None = 60.0, correct_reward: float = 1.0, incorrect_reward: float = 0.0,
                 device: str | None = None):
        super().__init__(correct_reward, incorrect_reward)
        self.model_name, self.graded, self.rubric, self.timeout = model, graded, rubric, timeout
        self.device = device
        self.name = f"local judge {model!r}"
        self._model: Any = None
        self._tokenizer: Any = None

    def load(self) -> None:
        """Load the model now (otherwise the first verdict does)."""
        if self._model is not None:
            return
        import torch

        from llamagym.policy.models import load_model

        with warnings.catch_warnings():  # loading's own notices (progress bars) are no finding of the env's
            warnings.simplefilter("ignore")
            policy, tokenizer = load_model(self.model_name)
        model = policy.base_model.eval()
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model, self._tokenizer = model.to(device), tokenizer

    def verdict(self, question: str, answer: str, reference: str | None = None) -> Verdict:
        start = time.monotonic()
        self.load()
        log_correct, log_incorrect = self.verdict_log_probs(judge_messages(question, answer, reference,
                                                                           self.rubric))
        elapsed = time.monotonic() - start
        if self.timeout is not None and elapsed > self.timeout:
            raise JudgeTimeoutError(f"{self.name} took {elapsed:.1f}s for one verdict, over its timeout of "
                                    f"{self.timeout:g}s; use a smaller judge model or raise the timeout")
        p_correct = 1.0 / (1.0 + math.exp(min(log_incorrect - log_correct, 700.0)))  # no overflow
        score = p_correct if self.graded else float(p_correct >= 0.5)
        word = CORRECT if p_correct >= 0.5 else INCORRECT
        return Verdict(score, f"{word} (p={p_correct:.3f})")

    def verdict_log_probs(self, messages: list[dict[str, str]]) -> tuple[float, float]:
        """The log-probabilities of " correct" and " incorrect" after the judge's prompt and "Verdict:"."""
        import torch

        from llamagym.policy.policy import apply_chat_template

        tokenizer, model = self._tokenizer, self._model
        prompt = apply_chat_template(tokenizer, messages)
        prompt += tokenizer(VERDICT_PREFIX, add_special_tokens=False)["input_ids"]
        scores = []
        for word in (CORRECT, INCORRECT):
            choice = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + choice], device=model.device)
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            scores.append(float(log_probs.gather(1, torch.tensor(choice, device=model.device)[:, None]).sum()))
        return scores[0], scores[1]

    def close(self) -> None:
        self._model = self._tokenizer = None
