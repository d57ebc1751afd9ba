"""What a judge reads: one system message with the rubric, one user message with the question, the reference
answer (if any) and the answer to judge. The judge answers with one verdict word."""

from __future__ import annotations

CORRECT, INCORRECT = "correct", "incorrect"
VERDICT_PREFIX = "Verdict:"

RUBRIC = ("You grade answers to questions. Compare the answer with the reference answer, if one is given: an "
          "answer is correct when it says the same thing, in any words. Reply with one word: correct or incorrect.")


def judge_messages(question: str, answer: str, reference: str | None = None, rubric: str = RUBRIC
                   ) -> list[dict[str, str]]:
    """The chat a judge answers: system (the rubric), user (question, reference, answer)."""
    lines = [f"Question: {question.strip()}"]
    if reference is not None:
        lines.append(f"Reference answer: {reference.strip()}")
    lines.append(f"Answer to grade: {answer.strip() or '(no answer)'}")
    lines.append("Is the answer correct or incorrect?")
    return [{"role": "system", "content": rubric}, {"role": "user", "content": "\n".join(lines)}]
