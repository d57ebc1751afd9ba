"""Roll out episodes and keep them as conversations with their returns, the data of a supervised warm start
(`llamagym sft`): the model's own episodes, the best of several played from one seed (best-of-n, rejection
sampling), or a scripted expert's (a plugin's `llamagym_expert_action`), recorded as if the model had answered."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from llamagym.agent.episode import Episode
from llamagym.errors import UsageError
from llamagym.plugins.calling import call_hook
from llamagym.rollout.engine import Engine, EpisodeResult

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

    _AgentBase = Agent  # what `Collecting` is mixed into
else:
    _AgentBase = object

POLICIES = ("model", "expert")  # who answers: the model sampling, or a scripted expert


@dataclass
class Finished:
    """A conversation that just ended, waiting for its episode's result."""

    slot: Hashable
    messages: list[dict[str, str]]
    env_return: float
    turns: int
    invalid_turns: int


class Collecting(_AgentBase):
    """Mixed into an agent's class by `collecting()`: it never trains, keeps every conversation that ends, and with
    `expert_policy` answers with the expert's actions instead of sampling."""

    expert_policy: bool = False
    finished: list[Finished]

    def act_batch(self, observations: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        if not self.expert_policy:
            return super().act_batch(observations)
        texts = {slot: self._demonstration(observation) for slot, observation in observations.items()}
        return self.record_responses(observations, texts)

    def _demonstration(self, observation: Any) -> str:
        """The expert's answer as response text, checked to read back (as the model's tokens) as its action."""
        action = expert_action(self, observation)
        text = self.format_action(action)
        tokenizer = self.tokenizer
        heard = self.response_prefix + tokenizer.decode(
            tokenizer(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
        try:
            read = call_hook(self, "llamagym_extract_action", (ValueError,), response=heard, observation=observation)
        except ValueError:
            read = None
        if read is None or not _same_action(read, action):
            raise UsageError(f"{agent_name(self)}.format_action({action!r}) gives {text!r}, which its extract_action "
                             f"reads as {'no action' if read is None else repr(read)}: the two must agree to record "
                             f"demonstrations")
        return text

    def terminate_episode(self, slot: Hashable = 0, truncated_observation: Any = None) -> dict[str, float]:
        self.end_episode(slot)  # never trains
        return {}

    def end_episode(self, slot: Hashable = 0) -> Episode | None:
        messages = self.messages(slot)
        episode = super().end_episode(slot)
        if messages is not None and episode is not None and episode.turns:
            self.finished.append(Finished(slot, messages, episode.env_return, len(episode.turns),
                                          episode.invalid_turns))
        return episode


def collecting(agent: Agent, expert: bool) -> Collecting:
    """Turn `agent` into a collecting one in place (its class gains `Collecting`), so that the rollout engines and
    every hook see the same object; returns it."""
    cls = type(agent)
    agent.__class__ = type(f"Collecting{cls.__name__}", (Collecting, cls), {"__module__": cls.__module__})
    collector = cast(Collecting, agent)
    collector.expert_policy, collector.finished = expert, []
    return collector


def expert_action(agent: Agent, observation: Any) -> Any:
    """The expert's action for `observation`; an error naming how to provide one if the agent has none."""
    action = call_hook(agent, "llamagym_expert_action", observation=observation)
    if action is None:
        raise UsageError(f"agent {agent_name(agent)} has no expert policy: a plugin must implement "
                         f"llamagym_expert_action (or the agent class expert_action); collect the model's own "
                         f"episodes with --policy model instead")
    return action


def agent_name(agent: Agent) -> str:
    """The name of the agent's own class (not the collecting subclass made from it)."""
    cls: type = type(agent)
    if issubclass(cls, Collecting):
        cls = next(base for base in cls.__mro__ if base is not cls and not issubclass(base, Collecting))
    return cls.__name__


def _same_action(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) if not hasattr(a, "__len__") else list(a) == list(b)
    except (TypeError, ValueError):
        return False


@dataclass
class Collection:
    """The conversations of a collection, and how many episodes were played to get them."""

    records: list[dict[str, Any]] = field(default_factory=list)
    played: int = 0
    played_return: float = 0.0

    @property
    def mean_return(self) -> float:
        return sum(r["return"] for r in self.records) / max(len(self.records), 1)

    @property
    def played_mean_return(self) -> float:
        return self.played_return / max(self.played, 1)


def collect(agent: Collecting, engine: Engine, groups: int, *, best_of: int = 1, min_return: float | None = None,
            tags: Mapping[str, Any] | None = None, on_episode: Callable[[EpisodeResult], None] | None = None
            ) -> Collection:
    """Play `groups` × `best_of` episodes with `agent` (made `collecting`) on `engine`, whose episodes
    i·best_of … (i+1)·best_of − 1 share a reset seed; keep the best of each group (the first on a tie), and only
    those whose return is at least `min_return`. Each record: `tags`, episode index and seed, return, messages."""
    rows: list[dict[str, Any]] = []

    def on_result(result: EpisodeResult) -> None:
        ended, agent.finished = agent.finished, []
        if result.error is None:
            rows.extend(_record(result, finished, tags) for finished in ended)
        if on_episode is not None:
            on_episode(result)

    engine.run(groups * best_of, learn=True, on_episode=on_result)  # training episodes: grouped seeds
    rows.sort(key=lambda r: r["index"])
    kept = best_per_group(rows, best_of)
    if min_return is not None:
        kept = [row for row in kept if row["return"] >= min_return]
    return Collection(kept, len(rows), sum(r["return"] for r in rows))


def _record(result: EpisodeResult, finished: Finished, tags: Mapping[str, Any] | None) -> dict[str, Any]:
    row = {**(tags or {}), "index": result.index, "seed": result.seed, "return": finished.env_return,
           "turns": finished.turns, "invalid_turns": finished.invalid_turns}
    if isinstance(finished.slot, tuple) and len(finished.slot) == 2:  # a game seat: (table, agent id)
        row["seat"] = finished.slot[1]
    row["messages"] = finished.messages
    return row


def best_per_group(rows: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The highest-return row of each run of `size` consecutive episode indices (the first one on a tie)."""
    if size <= 1:
        return rows
    best: dict[int, dict[str, Any]] = {}
    for row in rows:
        group = row["index"] // size
        if group not in best or row["return"] > best[group]["return"]:
            best[group] = row
    return [best[group] for group in sorted(best)]


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write the records as JSON lines, atomically (a reader never sees half a file)."""
    from llamagym.run.checkpoint import atomic_write_text  # imports torch: not for --help

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))


def save_records(path: Path, records: list[dict[str, Any]]) -> None:
    """`write_jsonl`, and if `path` cannot be written after all (the disk filled up, the folder went away), the
    records are written to a file in the temporary directory instead, and the error says where they are."""
    try:
        write_jsonl(path, records)
    except OSError as exc:
        import tempfile

        handle, kept = tempfile.mkstemp(prefix="llamagym-collect-", suffix=".jsonl")
        os.close(handle)
        write_jsonl(Path(kept), records)
        raise UsageError(f"cannot write {str(path)!r} ({exc.strerror or exc}); the {len(records)} collected "
                         f"conversations are kept in {kept}: move that file where you want it") from None


def read_conversations(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The records of collected JSON-lines files; a file with none, or a line that is no conversation, is an error
    naming the file and line."""
    records = []
    for path in map(Path, paths):
        if not path.is_file():
            raise UsageError(f"conversation file {str(path)!r} does not exist; write one with `llamagym collect`")
        found = [_conversation(path, number, line)
                 for number, line in enumerate(path.read_bytes().split(b"\n"), start=1) if line.strip()]
        if not found:
            raise UsageError(f"conversation file {str(path)!r} holds no conversations (it is empty); write one "
                             f"with `llamagym collect`")
        records += found
    return records


def _conversation(path: Path, number: int, line: bytes) -> dict[str, Any]:
    where = f"{path}:{number}"
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not UTF-8 text (a binary file?); pass files written by `llamagym collect`"
                         ) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not JSON ({exc.msg}); pass files written by `llamagym collect`") from None
    if not isinstance(record, dict) or not _is_conversation(record.get("messages")):
        raise UsageError(f"{where} has no conversation: each line needs \"messages\", a list of "
                         f"{{\"role\", \"content\"}} objects, as `llamagym collect` writes them")
    value = record.get("return", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise UsageError(f"{where} has a return of {value!r}; it must be a number (the episode's return)")
    first = next((m["role"] for m in record["messages"] if m["role"] != "system"), None)
    if first != "user":
        raise UsageError(f"{where} has a conversation whose first message after the system prompt is "
                         f"{'an ' + first + ' message' if first else 'missing'}; it must be the user's observation, "
                         f"as `llamagym collect` writes it")
    return record


def _is_conversation(messages: Any) -> bool:
    return isinstance(messages, list) and bool(messages) and all(
        isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
        for m in messages)


__all__ = ["collect", "collecting", "Collection", "best_per_group", "read_conversations", "write_jsonl"]
