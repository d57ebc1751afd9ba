"""The training loop: the whole algorithm of a run, for every engine (Gymnasium envs, PettingZoo games) and any
number of processes. Engines only play and yield what happens; this loop stores each learning policy's episodes,
decides when a batch is full, updates, records, checkpoints and stops:

    for event in engine.play(episodes):
        Trajectory  -> store the episode in its policy's batch; a full batch -> update (trainer.step: scores,
                       advantages by GAE / GRPO / REINFORCE, PPO epochs), log its stats
        Finished    -> log the episode; count environment errors; commit (the checkpoint point) once nothing
                       waits untrained; stop at a SIGINT/SIGTERM, or at a commit past the time limit
        Drained     -> grouped batches (GRPO): train what is stored, so the next group starts on the new policy
    then train what is left, and commit.

Several processes (data-parallel PPO) are a seam here, not another loop: the `ProcessGroup` says when a batch is
full (every process has played its share), runs the update as one collective step, and gathers the logs.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from typing import Any, ContextManager, Protocol

from llamagym.agent.agent import Agent
from llamagym.errors import TrainingError
from llamagym.run.interrupts import StopRequest
from llamagym.rollout.engine import Drained, Engine, EpisodeResult, ErrorBudget, Finished, Learner, Trajectory


class RunLog(Protocol):
    """Where the loop records a run (`llamagym.run.recorder.RunRecorder`; `NoLog` records nothing)."""

    def episode(self, result: EpisodeResult) -> None:
        """An episode ended (or was dropped)."""

    def updating(self, learner: Learner) -> ContextManager[Any]:
        """A context in which `learner`'s update runs (the recorder shows it as a phase of the progress bar)."""

    def update(self, learner: Learner, stats: dict[str, float], ending: int = 0) -> None:
        """`learner` made an update; `ending` episodes (0 or 1: the one, or the game, whose end filled the batch)
        have ended and are logged just after it."""

    def commit(self) -> None:
        """Every logged episode has been trained on: the point a resumed run continues from."""


class ProcessGroup(Protocol):
    """The processes of a run: `OneProcess`, or `llamagym.distributed.replicas.Replicas` for N."""

    size: int
    rank: int

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value`, in rank order (a collective call)."""

    def broadcast(self, value: Any) -> Any:
        """Process 0's `value`, on every process."""

    def barrier(self) -> None: ...

    def batch_full(self, learner: Learner, finished: int) -> bool:
        """Whether `learner` updates now, after this process has ended `finished` episodes."""

    def train(self, agent: Agent) -> dict[str, float]:
        """One update of `agent` on its stored batch (empty stats if there was nothing to train on)."""

    def remaining_updates(self, learner: Learner, episodes: int) -> int:
        """How many updates `learner` still makes once this process has played its `episodes`."""

    def agree(self, stop: StopRequest | None, failure: str | None) -> tuple[bool, str | None]:
        """Whether the run stops now, and the environment failure that ends it if any: every process learns what
        any one of them saw (and `stop` the signal another process was sent)."""

    def place(self, engine: Engine, env_id: str) -> None:
        """Give the engine this process's share of the episode indices (and so of the seeds)."""

    def prepare(self, agent: Agent, seed: int) -> None:
        """Make `agent` this process's replica of the policy (after a resume has loaded its checkpoint)."""

    def share(self, episodes: int) -> int:
        """This process's share of `episodes` more episodes of the run."""

    def local_index(self, index: int) -> int:
        """The first episode index of this process's engine, for a run that has started `index` episodes."""

    def device(self, requested: str) -> str:
        """The torch device of this process's model, for the `--device` asked for."""

    def close(self) -> None: ...


class OneProcess:
    """A run in one process: a batch is full when `batch_size` episodes are stored."""

    size, rank = 1, 0

    def gather(self, value: Any) -> list[Any]:
        return [value]

    def broadcast(self, value: Any) -> Any:
        return value

    def barrier(self) -> None:
        pass

    def batch_full(self, learner: Learner, finished: int) -> bool:
        agent = learner.agent
        return len(agent.buffer) >= agent.ppo_config.batch_size

    def train(self, agent: Agent) -> dict[str, float]:
        return agent.train()

    def remaining_updates(self, learner: Learner, episodes: int) -> int:
        return 1 if learner.agent.buffer else 0

    def agree(self, stop: StopRequest | None, failure: str | None) -> tuple[bool, str | None]:
        return stop is not None and stop.requested, failure

    def place(self, engine: Engine, env_id: str) -> None:
        pass

    def prepare(self, agent: Agent, seed: int) -> None:
        pass

    def share(self, episodes: int) -> int:
        return episodes

    def local_index(self, index: int) -> int:
        return index

    def device(self, requested: str) -> str:
        return requested

    def close(self) -> None:
        pass


class NoLog:
    """Records nothing (tests, benchmarks and the Agent API's own loop use the returned results)."""

    def episode(self, result: EpisodeResult) -> None:
        pass

    def updating(self, learner: Learner) -> ContextManager[Any]:
        return nullcontext()

    def update(self, learner: Learner, stats: dict[str, float], ending: int = 0) -> None:
        pass

    def commit(self) -> None:
        pass


def train_loop(engine: Engine, episodes: int, *, start_index: int = 0, log: RunLog | None = None,
               group: ProcessGroup | None = None, stop: StopRequest | None = None) -> list[EpisodeResult]:
    """Play episodes `start_index .. start_index + episodes - 1` on `engine`, training as batches fill; returns
    the results of the episodes played. Stops early (after committing) when `stop` is requested."""
    log, group = log or NoLog(), group or OneProcess()
    learners = engine.learners()  # the main policy last
    main = learners[-1]
    budget = ErrorBudget(engine.max_env_errors)
    results: list[EpisodeResult] = []

    stopped, failure = False, None

    def commit() -> None:
        log.commit()
        if stop is not None:
            stop.committed()  # past the time limit (max_minutes) the run stops here, where no episode is lost

    def update(learner: Learner, ending: int = 0) -> None:
        nonlocal stopped, failure
        with learner.training(), log.updating(learner):
            stats = group.train(learner.agent)  # trainer.step: score, advantages, PPO epochs
        if stats:
            log.update(learner, engine.after_update(learner, stats), ending)
        if group.size > 1:  # processes commit, and agree to stop or fail, together: right after each update
            commit()
            stopped, failure = group.agree(stop, failure)
            if failure is not None:
                raise TrainingError(failure)

    for event in engine.play(episodes, start_index=start_index):
        if isinstance(event, Trajectory):  # a learning policy's episode ended: store it for its next update
            event.learner.agent.buffer.append(event.episode)
        elif isinstance(event, Drained):  # grouped batches: train on this one before the next starts
            for learner in learners:
                if learner.agent.buffer:
                    update(learner)
        else:  # an episode (a game) ended or was dropped
            log.episode(event.result)
            results.append(replace(event.result, messages=None))  # a long run would hold every conversation
        for learner in learners:
            if group.batch_full(learner, len(results)):
                # an episode's (a game's) Trajectory comes just before its Finished: it ended, and is logged next
                update(learner, ending=int(isinstance(event, Trajectory)))
        if isinstance(event, Finished):
            failure = failure or budget.count(event.result)  # too many environment errors in a row
            if group.size == 1:
                if not main.agent.buffer:
                    commit()  # nothing waits untrained: a resumed run continues from here
                stopped, failure = group.agree(stop, failure)
        if stopped:  # a stop request wins over an environment failure seen at the same episode
            return results
        if failure is not None and group.size == 1:
            raise TrainingError(failure)
    for learner in learners:  # what is left, the main policy last
        for _ in range(group.remaining_updates(learner, episodes)):
            update(learner)
    log.commit()
    if group.size > 1:  # an environment failure since the last update, in any process
        failure = group.agree(stop, failure)[1]
    if failure is not None:
        raise TrainingError(failure)
    return results

