"""The coach: one `llamagym_shape_reward` hook that scores every move of the blackjack agent (written in another
package) against basic strategy. Installing the package is enough; `LLAMAGYM_BLOCK_PLUGINS=blackjack-coach`
turns it off. The environment's return in the metrics stays the game's own; the coach's terms are logged as
`shaping/blackjack-coach`."""

from __future__ import annotations

from llamagym import hookimpl

BONUS = 0.1  # per move; small next to the game's ±1, so winning still matters most


@hookimpl
def llamagym_shape_reward(agent, observation, response, action):
    """+BONUS for the basic-strategy move, -BONUS for the other; nothing for other agents or invalid answers."""
    from llamagym import ActionParseError
    from llamagym_blackjack.agent import BlackjackAgent
    from llamagym_blackjack.strategy import basic_strategy

    if not isinstance(agent, BlackjackAgent):
        return None
    try:
        agent.extract_action(response)
    except ActionParseError:  # the move was the agent's fallback, not the model's: the invalid penalty covers it
        return None
    return BONUS if int(action) == basic_strategy(observation) else -BONUS
