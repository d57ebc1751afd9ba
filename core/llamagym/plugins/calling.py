"""Calling the behaviour hooks: an exception from a plugin's hook (or from the agent's own method behind it)
becomes one `PluginError` line that names who raised it and in which hook, instead of a traceback."""

from __future__ import annotations

from typing import Any

from llamagym.errors import LlamaGymError, PluginError

AGENT_METHODS_PLUGIN = "llamagym.agent_methods"
AGENT_METHOD_OF_HOOK = {"llamagym_system_prompt": "get_system_prompt",
                        "llamagym_format_observation": "format_observation",
                        "llamagym_extract_action": "extract_action",
                        "llamagym_response_complete": "response_complete",
                        "llamagym_action_choices": "action_choices",
                        "llamagym_expert_action": "expert_action"}


def call_hook(agent: Any, name: str, allowed: tuple[type[BaseException], ...] = (), **kwargs: Any) -> Any:
    """`agent.plugin_manager.hook.<name>(agent=agent, **kwargs)`; exceptions of the `allowed` types (and
    llamagym's own errors) pass through unchanged, any other becomes a PluginError naming the culprit."""
    hook = getattr(agent.plugin_manager.hook, name)
    try:
        return hook(agent=agent, **kwargs)
    except (LlamaGymError, *allowed):
        raise
    except Exception as exc:
        raise PluginError(f"{culprit(hook, exc, agent, name)} raised {type(exc).__name__} in {name}: "
                          f"{_first_line(exc)}") from exc


def culprit(hook: Any, exc: BaseException, agent: Any, name: str) -> str:
    """Who raised: the deepest hook implementation on the traceback, named by plugin (or by agent class)."""
    implementations = {getattr(impl.function, "__code__", None): impl for impl in hook.get_hookimpls()}
    found = None
    traceback = exc.__traceback__
    while traceback is not None:
        found = implementations.get(traceback.tb_frame.f_code, found)
        traceback = traceback.tb_next
    if found is None:
        return f"a {name} hook"
    if found.plugin_name == AGENT_METHODS_PLUGIN:
        agent_class = type(agent)
        method = AGENT_METHOD_OF_HOOK.get(name, name)
        return f"agent {agent_class.__module__}.{agent_class.__qualname__}.{method}"
    return f"plugin {found.plugin_name!r} (block it with LLAMAGYM_BLOCK_PLUGINS={found.plugin_name})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
