"""Hook implementations: what this package adds to llamagym. Kept free of heavy imports so listing is fast."""

from __future__ import annotations

from pathlib import Path

from llamagym import hookimpl

PRESET = Path(__file__).with_name("preset.toml")


@hookimpl
def llamagym_register_agents(register):
    register("blackjack", "llamagym_blackjack.agent:BlackjackAgent",
             description="reads the hand as a sentence and answers stick or hit", preset=str(PRESET))


@hookimpl
def llamagym_register_envs(register):
    register("Blackjack-v1", description="Gymnasium's Blackjack-v1: beat the dealer without going over 21")


@hookimpl
def llamagym_expert_action(agent, observation):
    """Basic strategy, the optimal play, for the blackjack agent (and agents derived from it)."""
    from .agent import BlackjackAgent
    from .strategy import basic_strategy

    return basic_strategy(observation) if isinstance(agent, BlackjackAgent) else None


@hookimpl
def llamagym_score_policy(agent, env_id):
    """The exact expected return of the blackjack agent's greedy policy on Blackjack-v1 (prompt = current hand)."""
    from .agent import BlackjackAgent

    if env_id != "Blackjack-v1" or not isinstance(agent, BlackjackAgent) or agent.generation.max_history_turns != 1:
        return None
    from .scoring import score

    return score(agent)
