"""The policy's exact score before and after a run, where a plugin can compute one (`llamagym_score_policy`):
a newcomer sees what training changed, without the noise of sampled returns."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from llamagym.plugins.calling import call_hook

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent


def score_policy(agent: Agent, env_id: str) -> dict[str, Any] | None:
    """The `PolicyScore` of the agent's current weights as a dict (JSON for the run's state), or None."""
    score = call_hook(agent, "llamagym_score_policy", env_id=env_id)
    return None if score is None else dataclasses.asdict(score)


def describe(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """The closing lines `llamagym run` prints: before and after, the gain, the references."""
    if after is None:
        return []
    lines = []
    if before is not None:
        gain = after["expected_return"] - before["expected_return"]
        lines.append(f"exact return of the greedy policy: {before['expected_return']:+.4f} before training, "
                     f"{after['expected_return']:+.4f} after ({gain:+.4f})")
    else:
        lines.append(f"exact return of the greedy policy: {after['expected_return']:+.4f}")
    if after.get("sampled_return") is not None:
        if before is not None and before.get("sampled_return") is not None:
            gain = after["sampled_return"] - before["sampled_return"]
            lines.append(f"exact return of the sampling policy: {before['sampled_return']:+.4f} before training, "
                         f"{after['sampled_return']:+.4f} after ({gain:+.4f})")
        else:
            lines.append(f"exact return of the sampling policy: {after['sampled_return']:+.4f}")
    if after["references"]:
        lines.append("references: " + ", ".join(f"{name} {value:+.4f}" for name, value in after["references"].items()))
    if after["detail"]:
        lines.append(f"after training it {after['detail']}" if before is not None else after["detail"])
    return lines
