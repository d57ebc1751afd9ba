"""Scoring a blackjack agent exactly: its greedy answer in each of the 280 observations is a policy table, and
`strategy.policy_return` gives that table's expected return over Gymnasium's random deals without sampling
noise. Valid only when the prompt shows the current hand alone (max_history_turns = 1), so that the answer depends
on the observation and nothing else."""

from __future__ import annotations

from typing import Any

from llamagym.plugins.hookspecs import PolicyScore

from .strategy import HIT, REFERENCE_POLICIES, STICK, all_observations, basic_strategy, policy_return

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


def hit_probabilities(agent: Any, batch: int = 32) -> dict[Observation, float] | None:
    """P(hit | observation) of the sampling policy when it samples between the two one-token answers (constrained
    answers at the configured temperature); None otherwise (free text, or answers of several tokens)."""
    import torch

    from llamagym.policy.generation import left_pad, samples_training_distribution

    if not (agent.generation.constrained and samples_training_distribution(agent.generation)):
        return None
    answers = [agent.tokenizer(agent.format_action(a), add_special_tokens=False)["input_ids"] for a in (STICK, HIT)]
    if not all(len(ids) == 1 for ids in answers):
        return None
    system, states, out = agent.get_system_prompt(), all_observations(), {}
    for start in range(0, len(states), batch):
        chunk = states[start:start + batch]
        queries = [agent.prompt_ids([{"role": "system", "content": system},
                                     {"role": "user", "content": agent.format_observation(state)}]) for state in chunk]
        ids, mask = left_pad(queries, agent.tokenizer.pad_token_id, agent.device)
        with torch.no_grad(), agent.policy.autocast():
            logits = agent.model.next_token_logits(agent.model.hidden_states(ids, mask))
        two = logits[:, [answers[0][0], answers[1][0]]] / agent.generation.temperature
        out.update(zip(chunk, two.softmax(-1)[:, 1].tolist()))
    return out


def score(agent: Any) -> PolicyScore:
    table = greedy_table(agent)
    agrees = sum(table[o] == basic_strategy(o) for o in table) / len(table)
    sampling = hit_probabilities(agent)
    return PolicyScore(policy_return(table.__getitem__), reference_returns(),
                       f"agrees with basic strategy in {agrees:.0%} of the {len(table)} observations",
                       None if sampling is None else policy_return(sampling.__getitem__))
