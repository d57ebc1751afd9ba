"""A llamagym plugin for tests: environments that fail on purpose, and reward shaping that turns to NaN once
the agent has made a given number of updates (set LLAMAGYM_TEST_NAN_AFTER_UPDATES)."""

from __future__ import annotations

import math
import os

import gymnasium

from llamagym import hookimpl

NAN_AFTER_UPDATES = "LLAMAGYM_TEST_NAN_AFTER_UPDATES"


class FlakyBlackjack(gymnasium.Wrapper):
    """Blackjack-v1 whose reset (or step) raises in every episode whose seed is a multiple of `every` (0: never)."""

    def __init__(self, fail_reset_every: int = 0, fail_step_every: int = 0):
        super().__init__(gymnasium.make("Blackjack-v1"))
        self.fail_reset_every, self.fail_step_every = fail_reset_every, fail_step_every
        self.episode_seed = None

    def reset(self, *, seed=None, options=None):
        self.episode_seed = seed
        if _hits(seed, self.fail_reset_every):
            raise RuntimeError(f"reset failed on purpose (seed {seed})")
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        if _hits(self.episode_seed, self.fail_step_every):
            raise RuntimeError(f"step failed on purpose (seed {self.episode_seed})")
        return self.env.step(action)


def _hits(seed, every: int) -> bool:
    return bool(every) and seed is not None and seed % every == 0


def unbuildable():
    raise RuntimeError("this environment cannot be built")


@hookimpl
def llamagym_register_envs(register):
    register("FlakyStep-v0", "fault_plugin:FlakyBlackjack", kwargs={"fail_step_every": 3})
    register("FlakyReset-v0", "fault_plugin:FlakyBlackjack", kwargs={"fail_reset_every": 4})
    register("BrokenStep-v0", "fault_plugin:FlakyBlackjack", kwargs={"fail_step_every": 1})
    # with an odd run seed, process 1 of a two-process run plays the even seeds: every one of its episodes fails
    register("EvenSeedsFail-v0", "fault_plugin:FlakyBlackjack", kwargs={"fail_step_every": 2})
    register("Unbuildable-v0", "fault_plugin:unbuildable")


@hookimpl
def llamagym_shape_reward(agent):
    after = os.environ.get(NAN_AFTER_UPDATES)
    if after is not None and agent.trainer.updates >= int(after):
        return math.nan
    return None
