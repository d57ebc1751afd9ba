"""Calling hooks: the one place llamagym calls hook implementations. Every call goes through pluggy
(`pm.hook.<name>(...)`, or `pm.subset_hook_caller` for some of the plugins), so `tryfirst` / `trylast`,
`wrapper=True` implementations and pluggy's tracing see every call.

- `call_hook` / `call_pm_hook`: a behaviour hook; an exception from a plugin's hook (or from the agent's own method
  behind it) becomes one `PluginError` line that names who raised it and in which hook, instead of a traceback.
- `call_checked`: a behaviour hook whose answer is checked against the hook's contract (a system prompt that is a
  string, a non-empty list of choices); a wrong answer is one `PluginError` line naming the plugin that gave it.
- `shaping_terms`: the collect-all `llamagym_shape_reward`, each term tagged with the plugin that returned it.
- `call_registration_hook`: a hook called with a ``register`` callback (`llamagym_register_agents`, `_envs`,
  `_opponents`): each registration is tagged with the plugin whose implementation made it (found on the stack), and
  a plugin whose registration raises is set aside while the others register, once each.

Who called or who raised is found by looking for a hook implementation's code object among the frames of the stack
or of the traceback (the innermost one wins), as Python names the function a line belongs to.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

import pluggy

from llamagym.errors import LlamaGymError, PluginError

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

AGENT_METHODS_PLUGIN = "llamagym.agent_methods"
BUILTIN_PREFIX = "llamagym."  # the core's own default plugins (`llamagym.plugins.builtin`) are named llamagym.*
AGENT_METHOD_OF_HOOK = {"llamagym_system_prompt": "get_system_prompt",
                        "llamagym_format_observation": "format_observation",
                        "llamagym_extract_action": "extract_action",
                        "llamagym_response_complete": "response_complete",
                        "llamagym_action_choices": "action_choices",
                        "llamagym_expert_action": "expert_action"}
SHAPE_REWARD = "llamagym_shape_reward"


# --- behaviour hooks -------------------------------------------------------------------------------------------

def call_hook(agent: Agent, name: str, allowed: tuple[type[BaseException], ...] = (), **kwargs: Any) -> Any:
    """`agent.plugin_manager.hook.<name>(agent=agent, **kwargs)`; exceptions of the `allowed` types (and
    llamagym's own errors) pass through unchanged, any other becomes a PluginError naming the culprit."""
    return _call(agent.plugin_manager, name, allowed, agent, dict(agent=agent, **kwargs))


def call_pm_hook(pm: pluggy.PluginManager, name: str, allowed: tuple[type[BaseException], ...] = (),
                 **kwargs: Any) -> Any:
    """`pm.hook.<name>(**kwargs)` for a hook that takes no agent, with the same errors as `call_hook`."""
    return _call(pm, name, allowed, None, kwargs)


def _call(pm: pluggy.PluginManager, name: str, allowed: tuple[type[BaseException], ...], agent: Agent | None,
          kwargs: dict[str, Any]) -> Any:
    hook = getattr(pm.hook, name)
    passing: tuple[type[BaseException], ...] = (LlamaGymError, *allowed)
    try:
        return hook(**kwargs)
    except passing:
        raise
    except Exception as exc:
        raise PluginError(f"{culprit(hook, exc, agent, name)} raised {type(exc).__name__} in {name}: "
                          f"{_first_line(exc)}") from exc


def culprit(hook: Any, exc: BaseException, agent: Agent | None, name: str) -> str:
    """Who raised: the deepest hook implementation on the traceback, named by plugin (or by agent class)."""
    found = raising_impl(hook.get_hookimpls(), exc)
    if found is None:
        return f"a {name} hook"
    return describe_plugin(found.plugin_name, agent, name)


def describe_plugin(plugin_name: str, agent: Agent | None, name: str) -> str:
    """A plugin as an error names it: the agent's method behind the hook, a built-in plugin, or a third party's
    (with how to block it)."""
    if plugin_name == AGENT_METHODS_PLUGIN and agent is not None:
        agent_class = type(agent)
        method = AGENT_METHOD_OF_HOOK.get(name, name)
        return f"agent {agent_class.__module__}.{agent_class.__qualname__}.{method}"
    if plugin_name.startswith(BUILTIN_PREFIX):
        return f"llamagym's built-in plugin {plugin_name!r}"
    return f"plugin {plugin_name!r} (block it with LLAMAGYM_BLOCK_PLUGINS={plugin_name})"


# --- answers that break a hook's contract -----------------------------------------------------------------------

def call_checked(agent: Agent, name: str, check: Callable[[Any], str | None],
                 allowed: tuple[type[BaseException], ...] = (), **kwargs: Any) -> Any:
    """`call_hook`, with the answer checked against the hook's contract: `check(answer)` says what a right answer
    would be (None: this one is right); a wrong answer is a PluginError naming the plugin (or agent method) that
    gave it."""
    answer = call_hook(agent, name, allowed, **kwargs)
    problem = check(answer)
    if problem is not None:
        raise broken_contract(agent, name, answer, problem, **kwargs)
    return answer


def broken_contract(agent: Agent, name: str, answer: Any, problem: str, **kwargs: Any) -> PluginError:
    """The one-line error for a hook answer that breaks the hook's contract, naming who gave it."""
    text = repr(answer)
    text = text if len(text) <= 60 else text[:57] + "..."
    return PluginError(f"{answering(agent, name, kwargs)} returned {text} in {name}: {problem}")


def answering(agent: Agent, name: str, kwargs: dict[str, Any]) -> str:
    """Who gave a firstresult hook's answer: the first plugin, in pluggy's call order, that answers alone (the hook
    is called again, one plugin at a time, only to name it after a wrong answer)."""
    for plugin_name, caller in per_plugin_callers(agent.plugin_manager, name):
        try:
            if caller(agent=agent, **kwargs) is not None:
                return describe_plugin(plugin_name, agent, name)
        except Exception:  # noqa: S112  (one that raises now did not answer the first call)
            continue
    return f"a {name} hook"


# --- reward shaping: a collect-all hook whose answers are tagged with their plugin ------------------------------

def shaping_terms(agent: Agent, reward: float, observation: Any, response: Any, action: Any) -> list[tuple[str, float]]:
    """`(plugin name, term)` for every non-None answer to `llamagym_shape_reward`, in pluggy's call order (the order
    the terms are added in). A raising plugin becomes a PluginError naming it.

    Pluggy drops None answers, so the list of a single call cannot say which plugin gave which term: the hook is
    called once per plugin that implements it, in call order, through `pm.subset_hook_caller` with the other
    answering plugins left out; plugins that only wrap the hook (``wrapper=True``) stay in, so they see each call.
    """
    kwargs = {"agent": agent, "reward": reward, "observation": observation, "response": response, "action": action}
    terms = []
    for plugin_name, caller in per_plugin_callers(agent.plugin_manager, SHAPE_REWARD):
        try:
            answers = caller(**kwargs)
        except Exception as exc:
            found = raising_impl(caller.get_hookimpls(), exc)
            raise PluginError(f"plugin {found.plugin_name if found else plugin_name!r} raised in {SHAPE_REWARD}: "
                              f"{type(exc).__name__}: {exc}") from exc
        terms += [(plugin_name, float(answer)) for answer in answers]
    return terms


def per_plugin_callers(pm: pluggy.PluginManager, name: str) -> Iterator[tuple[str, Any]]:
    """`(plugin name, caller)` for each plugin that answers the hook `name`, in pluggy's call order (tryfirst
    first, then the last registered, trylast last): the caller calls that plugin's implementations and every
    wrapper-only plugin's, and no other plugin's."""
    impls = getattr(pm.hook, name).get_hookimpls()
    answering: list[Any] = []  # plugin objects, first-called first; compared by identity (plugins may not hash)
    names: list[str] = []
    for impl in reversed(impls):  # pluggy calls its list from the end
        if not _is_wrapper(impl) and not any(impl.plugin is p for p in answering):
            answering.append(impl.plugin)
            names.append(impl.plugin_name)
    for plugin, plugin_name in zip(answering, names):
        yield plugin_name, subset_caller(pm, name, [p for p in answering if p is not plugin])


def subset_caller(pm: pluggy.PluginManager, name: str, remove_plugins: Sequence[Any]) -> Any:
    """`pm.subset_hook_caller(name, remove_plugins)`: the hook without those plugins' implementations.

    Pluggy keeps the plugins to remove in a set (and some versions find them by attribute name, missing a
    `specname` implementation): where that cannot leave exactly those plugins out, the same call is made on the
    hook's own executor with the implementations filtered by identity."""
    hook = getattr(pm.hook, name)
    if not remove_plugins:
        return hook

    def removed(impl: Any) -> bool:
        return any(impl.plugin is plugin for plugin in remove_plugins)

    try:
        caller = pm.subset_hook_caller(name, remove_plugins=remove_plugins)
        if not any(removed(impl) for impl in caller.get_hookimpls()):
            return caller
    except TypeError:  # an unhashable plugin object (a dataclass instance, a SimpleNamespace)
        pass
    return _IdentitySubset(hook, removed)


class _IdentitySubset:
    """What `pm.subset_hook_caller` returns, for plugins pluggy cannot put in a set."""

    def __init__(self, hook: Any, removed: Callable[[Any], bool]):
        self.hook, self.name, self._removed = hook, hook.name, removed

    def get_hookimpls(self) -> list[Any]:
        return [impl for impl in self.hook.get_hookimpls() if not self._removed(impl)]

    def __call__(self, **kwargs: Any) -> Any:
        firstresult = bool(self.hook.spec and self.hook.spec.opts.get("firstresult"))
        return self.hook._hookexec(self.name, self.get_hookimpls(), kwargs, firstresult)


# --- registration hooks: a register callback, each registration tagged with its plugin --------------------------

class _Recorder:
    """The ``register`` passed to a registration hook: it checks the arguments against the real register's
    signature (a wrong call raises in the plugin, as it would there) and records them with the implementation that
    made the call, to be replayed once the hook has returned."""

    def __init__(self, name: str, impls: Sequence[Any], signature: inspect.Signature):
        self.name, self.impls, self.signature = name, impls, signature
        self.calls: dict[int, list[tuple[tuple, dict]]] = {}  # id(impl) -> the (args, kwargs) of its calls
        self.open = True

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.signature.bind(*args, **kwargs)
        if not self.open:
            raise PluginError(f"register was called after {self.name} returned; call it inside the hook")
        impl = calling_impl(self.impls, sys._getframe(1))
        if impl is None:
            raise PluginError(f"register was called outside every {self.name} implementation; call it inside one")
        self.calls.setdefault(id(impl), []).append((args, kwargs))


def call_registration_hook(pm: pluggy.PluginManager, name: str, make_register: Callable[[str], Callable],
                           on_error: Callable[[str, Exception], None]) -> None:
    """Call the registration hook `name` through pluggy, then make each registration with
    ``make_register(plugin name)(*args, **kwargs)``.

    Registrations are made in the order of ``get_hookimpls()`` (registration order: trylast first, tryfirst last;
    the reverse of pluggy's call order), each implementation's in the order it made them, so that a name claimed
    twice names the two plugins in that order. A plugin whose implementation raises (other than PluginError, which
    propagates) is passed to ``on_error(plugin name, exception)`` where its registrations end, keeping those it made
    before raising; the hook is then called again through `pm.subset_hook_caller` without it, with a fresh
    ``register``, so every other plugin registers exactly once, in pluggy's order. An exception raised by
    ``make_register``'s register (other than PluginError) counts as that plugin's.
    """
    hook = getattr(pm.hook, name)
    impls = hook.get_hookimpls()
    signature = inspect.signature(make_register(""))
    removed: list[Any] = []
    failed: dict[int, Exception] = {}  # id(impl) -> what it raised
    kept: dict[int, list[tuple[tuple, dict]]] = {}  # a failed plugin's registrations, from the call it failed in
    while True:
        register = _Recorder(name, impls, signature)
        try:
            subset_caller(pm, name, removed)(register=register)
        except PluginError:
            raise
        except Exception as exc:
            impl = raising_impl(impls, exc)
            if impl is None or any(impl.plugin is p for p in removed):
                raise PluginError(f"a {name} hook raised {type(exc).__name__}: {_first_line(exc)}") from exc
            failed[id(impl)] = exc
            removed.append(impl.plugin)
            kept.update({id(i): register.calls.get(id(i), []) for i in impls if i.plugin is impl.plugin})
            continue
        finally:
            register.open = False
        calls = {**register.calls, **kept}
        break
    for impl in impls:
        real_register = make_register(impl.plugin_name)
        try:
            for args, kwargs in calls.get(id(impl), []):
                real_register(*args, **kwargs)
        except PluginError:
            raise
        except Exception as exc:  # raised inside the plugin's call to register: the plugin stopped there
            failed[id(impl)] = exc
        if id(impl) in failed:
            on_error(impl.plugin_name, failed[id(impl)])


# --- who is calling, who raised ---------------------------------------------------------------------------------

def calling_impl(impls: Sequence[Any], frame: FrameType | None) -> Any:
    """The hook implementation (of `impls`) running at `frame` or in the nearest frame above it, or None."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return _innermost_impl(impls, frames)


def raising_impl(impls: Sequence[Any], exc: BaseException) -> Any:
    """The deepest hook implementation (of `impls`) on `exc`'s traceback, or None."""
    frames = []
    traceback = exc.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame)
        traceback = traceback.tb_next
    return _innermost_impl(impls, frames[::-1])


def _innermost_impl(impls: Sequence[Any], frames: Sequence[FrameType]) -> Any:
    """`frames` innermost first. Implementations that share a code object (two plugins made by one factory, two
    instances of a plugin class) are told apart by the instance running the method, else by the implementation
    pluggy's loop is running."""
    by_code: dict[CodeType, list[Any]] = {}
    for impl in impls:
        code = _code_of(impl.function)
        if code is not None:
            by_code.setdefault(code, []).append(impl)
    for index, frame in enumerate(frames):
        candidates = by_code.get(frame.f_code)
        if candidates:
            return candidates[0] if len(candidates) == 1 else _disambiguate(candidates, frame, frames[index + 1:])
    return None


def _disambiguate(candidates: list[Any], frame: FrameType, outer: Iterable[FrameType]) -> Any:
    code = frame.f_code
    if code.co_argcount:
        first = frame.f_locals.get(code.co_varnames[0], _MISSING)
        bound = [c for c in candidates if getattr(c.function, "__self__", _MISSING) is first]
        if len(bound) == 1:
            return bound[0]
    multicall = _multicall_code()
    for frame in outer:
        if frame.f_code is multicall:
            running = frame.f_locals.get("hook_impl")
            return next((c for c in candidates if c is running), candidates[0])
    return candidates[0]


_MISSING = object()


@functools.lru_cache(maxsize=1)
def _multicall_code() -> CodeType | None:
    try:  # pluggy's loop over the implementations; its local `hook_impl` is the one it is calling
        from pluggy._callers import _multicall
    except ImportError:
        return None
    return getattr(_multicall, "__code__", None)


def _code_of(function: Any) -> CodeType | None:
    while isinstance(function, functools.partial):
        function = function.func
    code = getattr(function, "__code__", None)  # functions, and bound methods (through __func__)
    if code is None:
        code = getattr(getattr(type(function), "__call__", None), "__code__", None)
    return code if isinstance(code, CodeType) else None


def _is_wrapper(impl: Any) -> bool:
    return bool(getattr(impl, "wrapper", False) or getattr(impl, "hookwrapper", False))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
