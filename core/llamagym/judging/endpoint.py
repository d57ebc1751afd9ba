"""`OpenAIJudge`: a judge behind any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp's
server, Ollama, ...): `base_url` (up to and including /v1), a model name, the API key read from an environment
variable. Each verdict is one POST to `{base_url}/chat/completions` with a timeout; the standard library does the
HTTP, so no client package is needed."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from typing import Any

from llamagym.judging.judge import Judge, JudgeTimeoutError, JudgeUnreachableError, MalformedVerdictError
from llamagym.judging.prompt import RUBRIC, judge_messages
from llamagym.judging.verdict import Verdict, parse_verdict


class OpenAIJudge(Judge):
    """A judge served over HTTP. The key is read from the variable `api_key_env` at each request (unset: no
    Authorization header, which local servers accept); `timeout` bounds each request in seconds; `extra_body`
    adds fields to every request."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout: float = 30.0, max_tokens: int = 8, rubric: str = RUBRIC,
                 extra_body: dict[str, Any] | None = None, correct_reward: float = 1.0,
                 incorrect_reward: float = 0.0):
        super().__init__(correct_reward, incorrect_reward)
        self.base_url = base_url.rstrip("/")
        self.model, self.api_key_env, self.timeout = model, api_key_env, float(timeout)
        self.max_tokens, self.rubric = max_tokens, rubric
        # fields the server understands beyond OpenAI's, e.g. llama.cpp's {"grammar": ...} or vLLM's
        # {"guided_choice": ["correct", "incorrect"]}, which make every answer a verdict
        self.extra_body = dict(extra_body or {})
        self.name = f"judge {model!r} at {self.base_url}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def verdict(self, question: str, answer: str, reference: str | None = None) -> Verdict:
        messages = judge_messages(question, answer, reference, self.rubric)
        return parse_verdict(self.complete(messages), self.name)

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The text of the server's first choice for `messages` (greedy, `max_tokens` at most)."""
        body = json.dumps({"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                           "temperature": 0.0, **self.extra_body}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise JudgeUnreachableError(f"{self.name} answered HTTP {exc.code} ({_error_body(exc)})"
                                        f"{self._hint(exc.code)}") from None
        except (TimeoutError, socket.timeout):
            raise JudgeTimeoutError(f"{self.name} did not answer within {self.timeout:g}s; raise the timeout "
                                    f"(LLAMAGYM_JUDGE_TIMEOUT) or use a faster judge") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise JudgeTimeoutError(f"{self.name} did not answer within {self.timeout:g}s; raise the timeout "
                                        f"(LLAMAGYM_JUDGE_TIMEOUT) or use a faster judge") from None
            raise JudgeUnreachableError(f"{self.name} cannot be reached ({exc.reason}); start the server or fix "
                                        f"the base URL (LLAMAGYM_JUDGE_URL)") from None
        except (ConnectionError, OSError) as exc:
            raise JudgeUnreachableError(f"{self.name} cannot be reached ({exc}); start the server or fix the "
                                        f"base URL (LLAMAGYM_JUDGE_URL)") from None
        return self._content(raw)

    def _content(self, raw: bytes) -> str:
        try:
            reply: Any = json.loads(raw)
            content = reply["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise MalformedVerdictError(f"{self.name} answered something that is no chat completion "
                                        f"({raw[:80]!r}); check that the base URL is an OpenAI-compatible /v1 "
                                        f"endpoint") from None
        if not isinstance(content, str):
            raise MalformedVerdictError(f"{self.name} answered a chat completion without text content")
        return content

    def _hint(self, status: int) -> str:
        if status in (401, 403):
            variable = self.api_key_env or "an API key variable"
            return f"; check the API key in ${variable}"
        if status == 404:
            return f"; check the base URL (it should end in /v1) and the model name {self.model!r}"
        return ""


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read().decode("utf-8", "replace").strip()
    except Exception:
        text = ""
    text = " ".join(text.split())
    return (text[:120] + "...") if len(text) > 120 else (text or str(exc.reason))
