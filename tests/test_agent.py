"""The Agent API: the seed's code unchanged, fallbacks, token bookkeeping, config parsing, history."""

import gymnasium as gym
import pytest

from llamagym.testing.engines import play_and_store
import torch

from llamagym import ActionParseError, Agent, ConfigError
from llamagym.policy.generation import Response
from llamagym.policy.policy import apply_chat_template


class SeedBlackjackAgent(Agent):  # exactly as LlamaGym users write it
    def get_system_prompt(self) -> str: return "You are an expert blackjack player."
    def format_observation(self, observation) -> str: return f"Your current total is {observation[0]}"
    def extract_action(self, response: str): return 0 if "stay" in response else 1


def test_seed_code_runs_unchanged(tiny_model_dir):
    from tqdm import trange
    from transformers import AutoTokenizer

    from llamagym import AutoModelForCausalLMWithValueHead

    path, device = str(tiny_model_dir), "cpu"
    model = AutoModelForCausalLMWithValueHead.from_pretrained(path).to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    agent = SeedBlackjackAgent(model, tokenizer, device)
    before = [p.detach().clone() for p in model.parameters()]
    env = gym.make("Blackjack-v1")
    all_stats = []
    for episode in trange(20, disable=True):
        observation, info = env.reset(seed=episode)
        done = False
        while not done:
            action = agent.act(observation)
            observation, reward, terminated, truncated, info = env.step(action)
            agent.assign_reward(reward)
            done = terminated or truncated
        train_stats = agent.terminate_episode()
        all_stats.append(train_stats)
    updates = [s for s in all_stats if s]
    assert len(updates) == 1 and all_stats[15] and not all_stats[14]  # default batch_size 16 episodes
    assert set(updates[0]) >= {"ppo/loss/policy", "ppo/kl", "env/return_mean", "env/invalid_rate"}
    after = list(model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


class StrictAgent(Agent):
    def get_system_prompt(self): return "Answer hit or stick."
    def format_observation(self, observation): return f"total {observation}"
    def extract_action(self, response):
        raise ActionParseError("never valid")


def test_act_never_returns_none_and_counts_invalid(tiny, bare_pm):
    model, tokenizer = tiny
    agent = StrictAgent(model, tokenizer, "cpu", {"max_new_tokens": 3},
                        {"batch_size": 2, "invalid_action_penalty": -0.5}, action_space=gym.spaces.Discrete(2),
                        plugin_manager=bare_pm)
    actions = [agent.act(12) for _ in range(3)]
    assert all(a in (0, 1) for a in actions)
    turns = agent.current_episode().turns
    assert [t.valid for t in turns] == [False] * 3
    assert [t.reward for t in turns] == [-0.5] * 3
    agent.assign_reward(1.0)
    assert turns[-1].reward == pytest.approx(0.5) and turns[-1].env_reward == 1.0
    agent.terminate_episode()
    stats = agent.terminate_episode()  # an empty slot ends nothing, the batch is not full yet
    assert stats == {}
    agent.act(3)
    stats = agent.terminate_episode()
    assert stats["env/invalid_rate"] == 1.0


def test_fallback_without_action_space_is_a_clear_error(tiny, bare_pm):
    model, tokenizer = tiny
    agent = StrictAgent(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm)
    with pytest.raises(ActionParseError, match="action_space"):
        agent.act(1)


class ChoiceAgent(Agent):
    seen: list

    def get_system_prompt(self): return "SYSTEM-PROMPT-TEXT"
    def format_observation(self, observation): return f"obs {observation}"
    def extract_action(self, response):
        self.seen.append(response)
        return 1


LLAMA2_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'system' %}<<SYS>>{{ m['content'] }}<</SYS>>"
                   "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %} {{ m['content'] }} "
                   "{% endif %}{% endfor %}")


@pytest.mark.parametrize("template", ["chatml", "llama2", "none"])
def test_response_boundary_comes_from_token_positions(tiny, bare_pm, template):
    model, tokenizer = tiny
    if template == "llama2":
        tokenizer.chat_template = LLAMA2_TEMPLATE
    elif template == "none":
        tokenizer.chat_template = None
    agent = ChoiceAgent(model, tokenizer, "cpu", {"max_new_tokens": 5}, plugin_manager=bare_pm)
    agent.seen = []
    agent.act(7)
    agent.act(8)
    turn = agent.current_episode().turns[-1]
    # the parser saw only the sampled continuation, never the system prompt
    assert all("SYSTEM-PROMPT-TEXT" not in text for text in agent.seen)
    assert turn.response == tokenizer.decode(turn.response_ids, skip_special_tokens=True)
    messages = [{"role": "system", "content": "SYSTEM-PROMPT-TEXT"}, {"role": "user", "content": "obs 7"},
                {"role": "assistant", "content": agent.seen[0]}, {"role": "user", "content": "obs 8"}]
    assert turn.query_ids == apply_chat_template(tokenizer, messages)


def test_history_cap_keeps_only_the_last_turns(tiny, bare_pm):
    model, tokenizer = tiny
    agent = ChoiceAgent(model, tokenizer, "cpu", {"max_new_tokens": 2, "max_history_turns": 1},
                        plugin_manager=bare_pm)
    agent.seen = []
    agent.act("first")
    agent.act("second")
    prompt = tokenizer.decode(agent.current_episode().turns[-1].query_ids)
    assert "second" in prompt and "first" not in prompt and "SYSTEM-PROMPT-TEXT" in prompt


def test_response_prefix_is_prompt_not_response(tiny, bare_pm):
    model, tokenizer = tiny

    class Prefixed(ChoiceAgent):
        response_prefix = "I hit"

    agent = Prefixed(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm)
    agent.seen = []
    agent.act(1)
    turn = agent.current_episode().turns[0]
    assert agent.seen[0].startswith("I hit")
    assert tokenizer.decode(turn.query_ids).endswith("I hit")
    assert turn.response == agent.seen[0]


def test_slots_keep_separate_episodes(tiny, bare_pm):
    model, tokenizer = tiny
    agent = ChoiceAgent(model, tokenizer, "cpu", {"max_new_tokens": 2}, {"batch_size": 2},
                        plugin_manager=bare_pm)
    agent.seen = []
    actions = agent.act_batch({"a": 1, "b": 2})
    assert actions == {"a": 1, "b": 1}
    agent.assign_reward(1.0, slot="a")
    agent.assign_reward(-1.0, slot="b")
    assert agent.current_episode("a").env_return == 1.0 and agent.current_episode("b").env_return == -1.0
    assert agent.terminate_episode("a") == {}
    stats = agent.terminate_episode("b")
    assert stats["env/return_mean"] == 0.0 and stats["env/win_rate"] == 0.5


def test_a_truncated_episode_keeps_the_prompt_act_would_show_next(tiny, bare_pm):
    model, tokenizer = tiny

    class Prefixed(ChoiceAgent):
        response_prefix = "I hit"

    agent = Prefixed(model, tokenizer, "cpu", {"max_new_tokens": 2, "max_history_turns": 1}, {"batch_size": 8},
                     plugin_manager=bare_pm)
    agent.seen = []
    for slot in ("cut", "played on", "ended"):  # the same two turns in three slots
        agent.record_responses({slot: 2}, {slot: " stick"})
        agent.record_responses({slot: 1}, {slot: " hit"})
    agent.act(0, slot="played on")
    shown_next = agent.current_episode("played on").turns[-1].query_ids
    counters = dict(agent.counters)
    agent.terminate_episode("cut", truncated_observation=0)  # cut at observation 0 (falsy, still an observation)
    agent.terminate_episode("ended")
    cut, ended = agent.buffer
    assert cut.bootstrap_query == shown_next and ended.bootstrap_query is None
    assert [len(cut.turns), len(ended.turns)] == [2, 2]
    assert {k: v for k, v in agent.counters.items() if k != "episodes"} == {
        k: v for k, v in counters.items() if k != "episodes"}  # nothing was sampled or recorded as a turn


class Walk(gym.Env):
    """One step further along a line per action; the goal is 1, 3 or 5 steps away (from the reset seed)."""

    observation_space, action_space = gym.spaces.Discrete(8), gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.goal = 0, 1 + 2 * (seed % 3)
        return self.position, {}

    def step(self, action):
        self.position += 1
        return self.position, 0.0, self.position == self.goal, False, {}


def test_the_rollout_engine_hands_a_truncated_episode_its_last_observation(tiny, bare_pm):
    from gymnasium.wrappers import TimeLimit

    from llamagym.rollout.gym import RolloutEngine

    model, tokenizer = tiny
    agent = ChoiceAgent(model, tokenizer, "cpu", {"max_new_tokens": 2}, {"batch_size": 8}, plugin_manager=bare_pm)
    agent.seen = []
    engine = RolloutEngine(agent, lambda: TimeLimit(Walk(), max_episode_steps=3), num_envs=3, seed=0)
    play_and_store(engine, 3)  # seeds 0, 1, 2: goals 1 (ended), 3 (ended just as the time ran out) and 5 (cut at 3)
    episodes = {episode.group: episode for episode in agent.buffer}
    assert [len(episodes[seed].turns) for seed in (0, 1, 2)] == [1, 3, 3]
    assert episodes[0].bootstrap_query is None and episodes[1].bootstrap_query is None
    cut = episodes[2]
    messages = [{"role": "system", "content": "SYSTEM-PROMPT-TEXT"}]
    for turn in cut.turns:
        messages += [{"role": "user", "content": f"obs {turn.observation}"},
                     {"role": "assistant", "content": turn.response}]
    assert cut.bootstrap_query == agent.prompt_ids(messages + [{"role": "user", "content": "obs 3"}])


def test_generate_and_ppo_dicts_accept_llamagym_keys(tiny, bare_pm):
    model, tokenizer = tiny
    agent = ChoiceAgent(model, tokenizer, "cpu",
                        {"generate/max_new_tokens": 7, "generate/top_p": 0.6, "generate/top_k": 0},
                        {"batch_size": 3, "mini_batch_size": 2, "init_kl_coef": 0.3, "seed": 1},
                        plugin_manager=bare_pm)
    assert agent.generation.max_new_tokens == 7 and agent.generation.top_p == 0.6
    assert agent.ppo_config.kl_coef == 0.3 and agent.ppo_config.batch_size == 3
    with pytest.raises(ConfigError, match="mini_batch_size"):
        ChoiceAgent(model, tokenizer, "cpu", None, {"mini_batch_size": 0}, plugin_manager=bare_pm)
    with pytest.raises(ConfigError, match="did you mean 'generation.temperature'"):
        ChoiceAgent(model, tokenizer, "cpu", {"temprature": 0.5}, plugin_manager=bare_pm)


def test_missing_cuda_is_a_clear_error(tiny, bare_pm, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, tokenizer = tiny
    with pytest.raises(ConfigError, match="no CUDA GPU; use cpu or auto"):
        ChoiceAgent(model, tokenizer, "cuda:0", plugin_manager=bare_pm)


# ---- actions of the wrong kind for the env's action space ------------------------------------------------------

class AnswersOne(Agent):
    def get_system_prompt(self): return "Answer."
    def format_observation(self, observation): return "go"
    def extract_action(self, response): return self.answer


@pytest.mark.parametrize("space, answer, fragment", [
    (gym.spaces.Box(-1.0, 1.0, (2,)), 1, "holds continuous actions (float32 arrays of shape (2,))"),
    (gym.spaces.Box(0.0, 1.0, (1,)), 0.5, "holds continuous actions (float32 arrays of shape (1,))"),
    (gym.spaces.Box(0.0, 1.0, (1,)), __import__("numpy").array([2.0], dtype="float32"),
     "is not in the env's action space Box(0.0, 1.0, (1,), float32); return one of its actions"),
    (gym.spaces.Discrete(2), 7, "is not in the env's action space Discrete(2); return one of its actions"),
])
def test_an_action_the_space_cannot_hold_is_one_line_naming_the_space(tiny, bare_pm, space, answer, fragment):
    from llamagym.errors import PluginError

    model, tokenizer = tiny
    agent = AnswersOne(model, tokenizer, "cpu", {"max_new_tokens": 2}, action_space=space, plugin_manager=bare_pm)
    agent.answer = answer
    with pytest.raises(PluginError) as raised:
        agent.act(None)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
    assert ("not an agent for this env" in str(raised.value)) == ("continuous" in fragment)


# ---- prompts longer than the model's context ---------------------------------------------------------------------

def tiny_gpt2(tokenizer, positions=64):
    """A tiny GPT-2: learnt positions, so a sequence past `positions` tokens fails inside the model."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=positions, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


class Echo(Agent):
    def get_system_prompt(self): return "Say go."
    def format_observation(self, observation): return observation
    def extract_action(self, response): return 0


def _echo(tiny, bare_pm, **generation):
    tokenizer = tiny[1]
    agent = Echo(tiny_gpt2(tokenizer), tokenizer, "cpu", generation, action_space=gym.spaces.Discrete(2),
                 plugin_manager=bare_pm)
    agent.policy.generator.generate = _never_generates
    return agent


def _never_generates(*args, **kwargs):
    raise AssertionError("generation started")


@pytest.mark.parametrize("observation, generation, fragments", [
    ("hit " * 80, {"max_new_tokens": 4},
     ["beyond the model's context of 64 tokens", "keep fewer turns in the prompt (generation.max_history_turns, "
      "now 0: every turn), shorten the system prompt or the observation"]),
    ("hit", {"max_new_tokens": 60},
     ["and up to generation.max_new_tokens = 60 more are generated, beyond the model's context of 64 tokens",
      "or lower generation.max_new_tokens (prompt + max_new_tokens <= 64)"]),
    ("stick " * 30, {"max_new_tokens": 40, "max_history_turns": 2},
     ["generation.max_history_turns, now 2", "lower generation.max_new_tokens"]),
])
def test_a_prompt_beyond_the_context_is_refused_before_generation(tiny, bare_pm, observation, generation, fragments):
    agent = _echo(tiny, bare_pm, **generation)
    tokens = len(apply_chat_template(agent.tokenizer, [{"role": "system", "content": "Say go."},
                                                       {"role": "user", "content": observation}]))
    with pytest.raises(ConfigError) as raised:
        agent.act(observation)
    message = str(raised.value)
    assert message.startswith(f"the prompt is {tokens} tokens") and "\n" not in message
    assert all(fragment in message for fragment in fragments), message


def test_a_prompt_within_the_context_is_sampled(tiny, bare_pm):
    tokenizer = tiny[1]
    agent = Echo(tiny_gpt2(tokenizer), tokenizer, "cpu", {"max_new_tokens": 8}, action_space=gym.spaces.Discrete(2),
                 plugin_manager=bare_pm)
    assert agent.act("hit") == 0
    assert len(agent.current_episode().turns[0].query_ids) + 8 <= 64


def test_a_growing_history_is_refused_at_the_turn_it_no_longer_fits(tiny, bare_pm):
    agent = _echo(tiny, bare_pm, max_new_tokens=4)
    agent.policy.generator.generate = lambda policy, prompts, *rest: [Response([7], "length") for _ in prompts]
    turns = 0
    with pytest.raises(ConfigError, match="now 0: every turn"):
        for turns in range(1, 20):
            agent.act("hit or stick")
    assert turns > 1  # the first turns fitted
    windowed = _echo(tiny, bare_pm, max_new_tokens=4, max_history_turns=1)
    windowed.policy.generator.generate = agent.policy.generator.generate
    for _ in range(20):
        windowed.act("hit or stick")  # the last turn only: it always fits
