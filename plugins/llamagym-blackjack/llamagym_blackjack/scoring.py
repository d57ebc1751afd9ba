"""Scoring a blackjack agent exactly: its greedy answer in each of the 280 observations is a policy table, and
`strategy.policy_return` gives that table's expected return over Gymnasium's random deals without sampling
noise. Valid only when the prompt shows the current hand alone (max_history_turns = 1), so that the answer depends
on the observation and nothing else."""

from __future__ import annotations

from typing import Any

from llamagym.plugins.hookspecs import PolicyScore

from .strategy import REFERENCE_POLICIES, all_observations, basic_strategy, policy_return

Observation = tuple[int, int, int]


def greedy_table(agent: Any, batch: int = 32) -> dict[Observation, float]:
    """The agent's greedy answer in every observation as a probability of hitting (0.5: an invalid answer, which
    the fallback replaces by a coin flip). The agent's RNG, counters and sampling setting are left as they were."""
    saved_state, saved_sampling = agent.state_dict(), agent.generation.do_sample
    agent.generation.do_sample = False
    observations, table = all_observations(), {}
    try:
        for start in range(0, len(observations), batch):
            chunk = {("score", i): o for i, o in enumerate(observations[start:start + batch])}
            actions = agent.act_batch(chunk)
            for slot, observation in chunk.items():
                valid = agent.current_episode(slot).turns[-1].valid
                table[observation] = float(actions[slot]) if valid else 0.5
                agent.end_episode(slot)
    finally:
        agent.generation.do_sample = saved_sampling
        agent.load_state_dict(saved_state)
    return table


def reference_returns() -> dict[str, float]:
    """The exact returns of the reference policies (random: a coin flip in every observation)."""
    return {name: (policy_return(lambda o: 0.5) if name == "random"
                   else policy_return(lambda o, p=make(): float(p(o))))
            for name, make in REFERENCE_POLICIES.items()}


def score(agent: Any) -> PolicyScore:
    table = greedy_table(agent)
    agrees = sum(table[o] == basic_strategy(o) for o in table) / len(table)
    return PolicyScore(policy_return(table.__getitem__), reference_returns(),
                       f"agrees with basic strategy in {agrees:.0%} of the {len(table)} observations")
