"""The judge a run uses, from environment variables (an env that judges reads these unless it is handed a judge,
or settings of the same names that win over them, e.g. `--env-kwarg 'judge={url = "...", model = "m"}'`):

    LLAMAGYM_JUDGE_URL       an OpenAI-compatible base URL (…/v1): judge over HTTP; unset: a local model
    LLAMAGYM_JUDGE_MODEL     the model: a name the server knows, or for a local judge what `--model` takes
                             ("default", a Hugging Face id, a directory, a .gguf file); default "default"
    LLAMAGYM_JUDGE_API_KEY_ENV  the variable holding the API key (default OPENAI_API_KEY; unset: no key sent)
    LLAMAGYM_JUDGE_TIMEOUT   seconds per verdict (default 30 over HTTP, 60 locally)
    LLAMAGYM_JUDGE_GRADED    1: a local judge's reward is its probability of "correct", not 0 or 1
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from llamagym.errors import ConfigError
from llamagym.judging.judge import Judge

PREFIX = "LLAMAGYM_JUDGE_"
SETTINGS = ("url", "model", "api_key_env", "timeout", "graded")  # each LLAMAGYM_JUDGE_<NAME>, in lower case


def judge_from_environment(environ: Mapping[str, str] | None = None, **overrides: object) -> Judge:
    """A LocalJudge or an OpenAIJudge as the LLAMAGYM_JUDGE_* variables describe (`overrides`, the same names in
    lower case without the prefix, win)."""
    env = os.environ if environ is None else environ
    settings: dict[str, object] = {key[len(PREFIX):].lower(): value for key, value in env.items()
                                   if key.startswith(PREFIX)}
    settings.update({key: value for key, value in overrides.items() if value is not None})
    known = set(SETTINGS)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"unknown judge setting {PREFIX}{unknown[0].upper()}; known: "
                          f"{', '.join(PREFIX + k.upper() for k in sorted(known))}")
    model = str(settings.get("model") or "default")
    timeout = _seconds(settings.get("timeout"))
    url = settings.get("url")
    if url:
        from llamagym.judging.endpoint import OpenAIJudge

        key_env = settings.get("api_key_env", "OPENAI_API_KEY")
        return OpenAIJudge(str(url), model, api_key_env=str(key_env) if key_env else None,
                           timeout=30.0 if timeout is None else timeout)
    from llamagym.judging.local import LocalJudge

    graded = str(settings.get("graded", "")).lower() in ("1", "true", "yes")
    return LocalJudge(model, graded=graded, timeout=60.0 if timeout is None else timeout)


def _seconds(value: object) -> float | None:
    if value in (None, ""):
        return None
    try:
        seconds = float(str(value))
    except ValueError:
        raise ConfigError(f"{PREFIX}TIMEOUT={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ConfigError(f"{PREFIX}TIMEOUT={value!r} must be more than 0 seconds")
    return seconds
