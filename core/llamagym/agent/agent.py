"""The Agent: subclass it, write three methods, and use it in a plain Gymnasium loop.

    class BlackjackAgent(Agent):
        def get_system_prompt(self): ...
        def format_observation(self, observation): ...
        def extract_action(self, response): ...

    agent = BlackjackAgent(model, tokenizer, device)
    action = agent.act(observation); agent.assign_reward(reward); stats = agent.terminate_episode()

Several episodes can run at once: every call takes an optional `slot` (any hashable key, one per environment
copy or player seat), and `act_batch({slot: observation})` answers all of them with one batched generation.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from llamagym.agent.choices import ChoiceTrie, build_trie
from llamagym.agent.episode import Episode, Turn, episode_stats
from llamagym.algo.trainer import PPOTrainer
from llamagym.config import PPO_ALIASES, PPO_IGNORED, GenerationConfig, PPOConfig, build
from llamagym.errors import ActionParseError
from llamagym.plugins.calling import broken_contract, call_checked, call_hook, shaping_terms
from llamagym.plugins.manager import get_plugin_manager
from llamagym.policy.policy import Policy, apply_chat_template
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead

logger = logging.getLogger(__name__)

GENERATE_PREFIX = "generate/"
# Keys of `transformers.GenerationConfig` that LlamaGym users pass and that mean the same here.
GENERATE_ALIASES = {"max_length": None, "pad_token_id": None, "eos_token_id": None, "num_beams": None,
                    "min_length": None, "use_cache": None, "batch_size": None}


@dataclass
class Conversation:
    """The running chat of one slot: messages so far and the turns of the current episode."""

    messages: list[dict[str, str]]
    episode: Episode = field(default_factory=Episode)
    pending_reward: float = 0.0


class Agent:
    """An LLM policy that plays an environment and learns from its rewards with PPO.

    Subclasses write `get_system_prompt`, `format_observation` and `extract_action`; installed plugins may
    override any of the three through hooks. `model` may be an `AutoModelForCausalLMWithValueHead`, a plain
    causal LM or a peft model: a value head is added when missing.
    """

    #: Stop generating once the response contains one of these strings.
    stop_strings: tuple[str, ...] = ()
    #: Text that opens every assistant turn (prefill), e.g. "My answer:". The model continues it; the prefix is
    #: part of the prompt (never trained on) and of the response text that `extract_action` reads.
    response_prefix: str = ""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, device: str | torch.device | None = None,
                 generate_config_dict: Mapping[str, Any] | None = None,
                 ppo_config_dict: Mapping[str, Any] | None = None, *, action_space: Any = None,
                 plugin_manager: Any = None, precision: str = "auto", seed: int | None = None):
        generation = parse_generate_config(generate_config_dict)
        ppo_config = build(PPOConfig, dict(ppo_config_dict or {}), "ppo.", PPO_ALIASES, PPO_IGNORED)
        self.policy = Policy(model, tokenizer, device, generation, ppo_config, precision, seed)
        self.action_space = action_space
        if plugin_manager is None:
            plugin_manager = get_plugin_manager()
        self.plugin_manager = plugin_manager
        self.seed = seed
        self.rng = random.Random(seed)  # the agent's own draws: fallback actions
        self._conversations: dict[Hashable, Conversation] = {}
        self._last_valid_action: Any = None
        self._warned_invalid = False
        self._tries: dict[tuple[str, ...], ChoiceTrie] = {}
        self.buffer: list[Episode] = []
        self.counters = {"episodes": 0, "turns": 0, "invalid_turns": 0, "generated_tokens": 0}

    # ---- the policy side, as the seed's Agent exposed it ---------------------------------------------------

    @property
    def model(self) -> AutoModelForCausalLMWithValueHead:
        return self.policy.model

    @property
    def tokenizer(self) -> Any:
        return self.policy.tokenizer

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @property
    def generation(self) -> GenerationConfig:
        return self.policy.generation

    @property
    def ppo_config(self) -> PPOConfig:
        return self.policy.ppo_config

    @property
    def trainer(self) -> PPOTrainer:
        return self.policy.trainer

    @property
    def generator(self) -> Any:
        return self.policy.generator

    @property
    def autocast(self) -> Any:
        return self.policy.autocast

    @property
    def eos_token_ids(self) -> set[int]:
        return self.policy.eos_token_ids

    # ---- the three methods a subclass writes -------------------------------------------------------------

    def get_system_prompt(self) -> str:
        """The system message that opens every episode."""
        raise NotImplementedError(f"{type(self).__name__} must define get_system_prompt() "
                                  f"(or a plugin must implement llamagym_system_prompt)")

    def format_observation(self, observation: Any) -> str:
        """The observation as the user message the model reads."""
        raise NotImplementedError(f"{type(self).__name__} must define format_observation(observation)")

    def extract_action(self, response: str) -> Any:
        """The action the response asks for; raise `ActionParseError` (never return None) if there is none.

        A subclass may also accept the observation: ``extract_action(self, response, observation)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must define extract_action(response)")

    # ---- optional overrides --------------------------------------------------------------------------------

    def response_complete(self, response: str) -> bool:
        """Whether the partial response already holds a whole action, so generation can stop early."""
        return any(stop in response for stop in self.stop_strings)

    def action_choices(self, observation: Any) -> list[str] | None:
        """Every response (text after `response_prefix`) the agent accepts for `observation`, if it can list them:
        sampling is then restricted to them (`generation.constrained`). None (the default): free text."""
        return None

    def expert_action(self, observation: Any) -> Any:
        """The action a scripted expert takes (demonstrations for `llamagym collect --policy expert`); None: no
        expert."""
        return None

    def format_action(self, action: Any) -> str:
        """The response text (after `response_prefix`) that names `action`, so a demonstration reads like the
        model's own answer; `extract_action` must read the action back from it."""
        raise NotImplementedError(f"{type(self).__name__} must define format_action(action) to record "
                                  f"demonstrations: the text after its response prefix that names the action")

    def fallback_action(self, observation: Any) -> Any:
        """The action taken when the response holds no valid one (documented rule, in order):
        a random action of `action_space` if the agent has one, else the last valid action, else an error."""
        if self.action_space is not None:
            return _sample_space(self.action_space, self.rng)
        if self._last_valid_action is not None:
            return self._last_valid_action
        raise ActionParseError(
            f"{type(self).__name__} could not parse an action and has no fallback: pass "
            f"action_space=env.action_space to the agent, or override fallback_action(observation)")

    # ---- the Gymnasium loop API ----------------------------------------------------------------------------

    def act(self, observation: Any, slot: Hashable = 0) -> Any:
        """Show `observation` to the model, sample a response, return the action it names (never None)."""
        return self.act_batch({slot: observation})[slot]

    def act_batch(self, observations: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """`act` for several slots at once, answered by one batched generation."""
        slots = list(observations)
        prompts = [self._prompt_ids(slot, observations[slot]) for slot in slots]
        tries = [self._choice_trie(observations[slot]) for slot in slots]
        responses = self.policy.generate(prompts, self._is_complete,
                                         tries if any(t is not None for t in tries) else None)
        actions = {}
        for slot, prompt, response, trie in zip(slots, prompts, responses, tries):
            actions[slot] = self._record_turn(slot, observations[slot], prompt, response.token_ids, trie,
                                              response.logprobs, response.values)
        return actions

    def record_responses(self, observations: Mapping[Hashable, Any], responses: Mapping[Hashable, str]
                         ) -> dict[Hashable, Any]:
        """`act_batch` with given response texts (what follows `response_prefix`) instead of sampled ones: a
        demonstration is recorded as if the model had said it. Returns the actions the responses name."""
        actions = {}
        for slot, observation in observations.items():
            prompt = self._prompt_ids(slot, observation)
            response = self.tokenizer(responses[slot], add_special_tokens=False)["input_ids"]
            actions[slot] = self._record_turn(slot, observation, prompt, response, self._choice_trie(observation))
        return actions

    def assign_reward(self, reward: float, slot: Hashable = 0) -> None:
        """Add `reward` to the slot's last turn (plugins may add shaping terms)."""
        conversation = self._conversation(slot)
        if not conversation.episode.turns:
            conversation.pending_reward += float(reward)
            return
        turn = conversation.episode.turns[-1]
        turn.env_reward += float(reward)
        turn.reward += float(reward)
        for plugin, term in self._shaping_terms(turn, float(reward)):
            turn.shaping[plugin] = turn.shaping.get(plugin, 0.0) + term
            turn.reward += term

    def terminate_episode(self, slot: Hashable = 0, truncated_observation: Any = None) -> dict[str, float]:
        """End the slot's episode; train once `batch_size` episodes are stored. Returns the train stats or {}.

        An episode cut short (Gymnasium's `truncated` and not `terminated`, e.g. a time limit) passes the
        observation it was cut at: PPO then bootstraps from the value of that state instead of valuing it at 0.
        """
        if truncated_observation is not None:
            self.record_bootstrap(slot, truncated_observation)
        episode = self.end_episode(slot)
        if episode is not None and episode.turns:
            self.buffer.append(episode)
        if len(self.buffer) >= self.ppo_config.batch_size:
            return self.train()
        return {}

    def messages(self, slot: Hashable = 0) -> list[dict[str, str]] | None:
        """A copy of the slot's conversation so far (system, user and assistant messages), if it has one."""
        conversation = self._conversations.get(slot)
        return list(conversation.messages) if conversation is not None else None

    def current_episode(self, slot: Hashable = 0) -> Episode | None:
        """The slot's episode in progress, if any."""
        conversation = self._conversations.get(slot)
        return conversation.episode if conversation is not None else None

    def end_episode(self, slot: Hashable = 0) -> Episode | None:
        """End the slot's episode without storing it for training (evaluation, or a failed environment)."""
        conversation = self._conversations.pop(slot, None)
        if conversation is None:
            return None
        self.counters["episodes"] += 1
        return conversation.episode

    def train(self) -> dict[str, float]:
        """Run one PPO update on the stored episodes now (whether or not the batch is full)."""
        episodes, self.buffer = self.buffer, []
        if not episodes:
            return {}
        stats = self.trainer.step(episodes)
        stats.update(episode_stats(episodes))
        return stats

    def reset_conversations(self) -> None:
        """Drop every episode in progress (for example before an evaluation)."""
        self._conversations.clear()

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the agent besides its weights and trainer: its RNG and counters."""
        return {"rng": self.rng.getstate(), "counters": dict(self.counters)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.counters.update(state["counters"])

    # ---- internals -----------------------------------------------------------------------------------------

    def _conversation(self, slot: Hashable) -> Conversation:
        if slot not in self._conversations:
            system = call_checked(self, "llamagym_system_prompt", _text_or_none)
            messages = [{"role": "system", "content": system}] if system else []
            self._conversations[slot] = Conversation(messages)
        return self._conversations[slot]

    def _prompt_ids(self, slot: Hashable, observation: Any) -> list[int]:
        conversation = self._conversation(slot)
        conversation.messages.append(self._user_message(observation))
        return self.prompt_ids(conversation.messages)

    def _user_message(self, observation: Any) -> dict[str, str]:
        text = call_hook(self, "llamagym_format_observation", observation=observation)
        return {"role": "user", "content": str(text)}

    def record_bootstrap(self, slot: Hashable, observation: Any) -> None:
        """Keep on the slot's episode the prompt `act` would show for `observation`, the state a truncated episode
        was cut at (nothing is sampled, and the conversation is left as it is)."""
        conversation = self._conversations.get(slot)
        if conversation is None or not conversation.episode.turns:
            return
        messages = conversation.messages + [self._user_message(observation)]
        conversation.episode.bootstrap_query = self.prompt_ids(messages)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt token ids for a conversation that ends with a user message, exactly as the model sees them:
        the visible history (`max_history_turns`), the chat template, the response prefix. A prompt that leaves
        the model's context no room for the response is a one-line ConfigError saying what to shorten."""
        ids = apply_chat_template(self.tokenizer, self._visible_messages(messages))
        if self.response_prefix:
            ids = ids + self.tokenizer(self.response_prefix, add_special_tokens=False)["input_ids"]
        self.policy.check_prompt(ids)
        return ids

    def _visible_messages(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The system message and the last `max_history_turns` turns (0 keeps them all)."""
        keep = self.generation.max_history_turns
        if not keep:
            return messages
        head = messages[:1] if messages and messages[0]["role"] == "system" else []
        body = messages[len(head):]
        return head + body[-(2 * keep - 1):]

    def _response_text(self, token_ids: list[int]) -> str:
        return self.response_prefix + self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def _is_complete(self, row: int, token_ids: list[int]) -> bool:
        text = self._response_text(token_ids)
        return bool(call_hook(self, "llamagym_response_complete", response=text))

    def _choice_trie(self, observation: Any) -> ChoiceTrie | None:
        """The trie of the responses the agent accepts for `observation`, if it lists them and sampling is
        constrained."""
        if not self.generation.constrained:
            return None
        choices = call_checked(self, "llamagym_action_choices", _choices_problem, observation=observation)
        if choices is None:
            return None
        key = tuple(choices)
        if key not in self._tries:
            end = self.tokenizer.eos_token_id
            self._tries[key] = build_trie(self.tokenizer, key, end if end is not None else min(self.eos_token_ids))
        return self._tries[key]

    def _record_turn(self, slot: Hashable, observation: Any, prompt: list[int], token_ids: list[int],
                     trie: ChoiceTrie | None = None, logprobs: list[float] | None = None,
                     values: list[float] | None = None) -> Any:
        text = self._response_text(token_ids)
        action, valid = self._parse(text, observation)
        conversation = self._conversation(slot)
        conversation.messages.append({"role": "assistant", "content": text})
        penalty = 0.0 if valid else self.ppo_config.invalid_action_penalty
        turn = Turn(prompt, list(token_ids), text, observation, action, valid, reward=penalty,
                    env_reward=0.0, allowed=_allowed_tokens(trie, token_ids), logprobs=logprobs, values=values)
        turn.reward += conversation.pending_reward
        turn.env_reward += conversation.pending_reward
        conversation.pending_reward = 0.0
        conversation.episode.turns.append(turn)
        self.counters["turns"] += 1
        self.counters["invalid_turns"] += not valid
        self.counters["generated_tokens"] += len(token_ids)
        return action

    def _parse(self, text: str, observation: Any) -> tuple[Any, bool]:
        try:
            action = call_hook(self, "llamagym_extract_action", (ValueError,), response=text,
                               observation=observation)
            if action is None:
                raise ActionParseError("no extractor returned an action")
            problem = _space_problem(self.action_space, action)
            if problem is not None:
                raise broken_contract(self, "llamagym_extract_action", action, problem, response=text,
                                      observation=observation)
            self._last_valid_action = action
            return action, True
        except ValueError as exc:  # ActionParseError, or int("...") failing inside an extractor
            if not self._warned_invalid:
                logger.warning("%s: no valid action in %r (%s); taking the fallback action. Further invalid "
                               "responses are counted in the invalid-action rate.", type(self).__name__, text,
                               exc)
                self._warned_invalid = True
            return self.fallback_action(observation), False

    def _shaping_terms(self, turn: Turn, reward: float) -> list[tuple[str, float]]:
        return shaping_terms(self, reward, turn.observation, turn.response, turn.action)


def _text_or_none(answer: Any) -> str | None:
    if answer is None or isinstance(answer, str):
        return None
    return "it must return the system prompt as a string (or None for none)"


def _choices_problem(answer: Any) -> str | None:
    if answer is None:
        return None
    if isinstance(answer, str) or not isinstance(answer, Sequence) or not all(isinstance(c, str) for c in answer):
        return "it must return a list of the response strings the agent accepts (or None to answer freely)"
    if not answer:
        return "it must list at least one response the agent accepts (or return None to answer freely)"
    return None


def _space_problem(space: Any, action: Any) -> str | None:
    """Why `action` cannot be played in `space` (None: it can, or the space is free text, which envs sanitise)."""
    from gymnasium.spaces import Text

    contains = getattr(space, "contains", None)
    if contains is None or isinstance(space, Text):
        return None
    try:
        if contains(action):
            return None
    except Exception:  # noqa: S110  (a value the space cannot even compare: not in it)
        pass
    holds = _continuous_actions(space, action)
    if holds:
        return f"the env's action space {space} holds {holds}, and this agent answers with single values: it is " \
               f"not an agent for this env (train it on an env with a Discrete action space, such as the one it " \
               f"was written for, or write an agent whose extract_action returns such arrays)"
    return f"the action is not in the env's action space {space}; return one of its actions (or raise " \
           f"ActionParseError when the response names none)"


def _continuous_actions(space: Any, action: Any) -> str | None:
    """What a continuous (Box) action space holds, when the action is a single value rather than one of them."""
    from gymnasium.spaces import Box

    if not isinstance(space, Box) or space.shape == () or getattr(action, "shape", ()) != ():
        return None
    return f"continuous actions ({space.dtype} arrays of shape {space.shape})"


def parse_generate_config(config: Mapping[str, Any] | None) -> GenerationConfig:
    """Accept LlamaGym's ``generate/``-prefixed keys as well as plain ones."""
    cleaned = {}
    for key, value in (config or {}).items():
        key = key[len(GENERATE_PREFIX):] if key.startswith(GENERATE_PREFIX) else key
        if key in GENERATE_ALIASES:
            continue
        cleaned[key] = value
    return build(GenerationConfig, cleaned, "generation.")


def _allowed_tokens(trie: ChoiceTrie | None, token_ids: list[int]) -> list[list[int]] | None:
    """The tokens allowed at each position of a constrained response; None for free text (or a recorded
    response that is not one of the choices, which PPO then scores unconstrained)."""
    if trie is None:
        return None
    try:
        return trie.allowed_per_position(token_ids)
    except ValueError:
        return None


def _sample_space(space: Any, rng: random.Random) -> Any:
    space.seed(rng.randrange(2**31))
    return space.sample()


__all__ = ["Agent", "Conversation"]
