"""Exceptions with messages written for the person at the keyboard: what was wrong and what would be right."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LlamaGymError(Exception):
    """Base class of every error llamagym raises on purpose."""


class UsageError(LlamaGymError):
    """Bad input from the user (a name, a flag, a config value); the CLI exits with code 2."""


class ConfigError(UsageError):
    """A configuration value or file that cannot be used."""


class UnknownNameError(ConfigError):
    """A name (agent, env, model, preset, config key) that is not known; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "", label: str = "installed"):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(unknown_name_message(kind, name, self.known, hint, label))


class ActionParseError(ValueError, LlamaGymError):
    """The model's response holds no valid action. Raise it from `extract_action`; never return None."""


class PluginError(LlamaGymError):
    """A plugin failed to load, registered a taken name, or raised inside a hook."""


class NameClashError(PluginError):
    """An agent name or env id that two or more plugins register: it cannot be used until one of them is
    uninstalled or blocked; every other name still works. The message names the plugins and how to resolve it."""

    def __init__(self, message: str, kind: str = "", name: str = "", plugins: tuple[str, ...] = ()):
        self.kind, self.name, self.plugins = kind, name, plugins
        super().__init__(message)


class DamagedFileError(LlamaGymError):
    """A file llamagym wrote (a checkpoint, an adapter, a run's rows) that does not read back as written; the
    message names the file (and line) and what is wrong with it."""

    def __init__(self, message: str, path: object = None):
        self.path = path
        super().__init__(message)


class TrainingError(LlamaGymError):
    """Training cannot go on (for example repeated non-finite losses)."""


def unknown_name_message(kind: str, name: str, known: list[str], hint: str = "", label: str = "installed") -> str:
    """One line: the unknown name, a close match if any, and the names that would work."""
    message = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    message += f"; {label}: " + (", ".join(known) if known else "none")
    if hint:
        message += f". {hint}"
    return message


class JudgeError(LlamaGymError):
    """A judge model gave no usable verdict (server down, timeout, an answer that is no verdict): the message
    names the judge and what to do. Raised from an env's step, it drops that episode (logged), never a reward of 0."""
