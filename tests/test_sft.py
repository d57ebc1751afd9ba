"""`llamagym sft` and `llamagym run --init-adapter`: examples tokenised exactly as the agent prompts the model, the
loss on the responses only, learning, and the warm start carried into PPO."""

import json

import gymnasium as gym
import pytest
import torch
from click.testing import CliRunner

from llamagym import Agent
from llamagym.cli import cli
from llamagym.config import LoraConfig
from llamagym.policy.models import add_lora
from llamagym.tools.sft import IGNORE_INDEX, Example, SFTSettings, conversation_examples, fine_tune, sft_trainer, unique_examples


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


class Echo(Agent):
    response_prefix = "Answer:"

    def get_system_prompt(self):
        return "Repeat the number."

    def format_observation(self, observation):
        return f"The number is {observation}."

    def extract_action(self, response):
        return int(response.split(":")[-1])

    def format_action(self, action):
        return f" {action}"


def echo_agent(tiny, pm, history=0):
    model, tokenizer = tiny
    return Echo(add_lora(model, LoraConfig(r=4, alpha=8)), tokenizer, "cpu", plugin_manager=pm,
                generate_config_dict={"max_new_tokens": 4, "max_history_turns": history},
                action_space=gym.spaces.Discrete(10), seed=0)


@pytest.mark.parametrize("history", [0, 1])
def test_examples_are_tokenised_exactly_as_the_agent_prompted(tiny, bare_pm, history):
    agent = echo_agent(tiny, bare_pm, history)
    for observation in (3, 1, 4):
        agent.act(observation)
    episode, messages = agent.current_episode(), agent._conversations[0].messages
    examples = conversation_examples(agent, messages)
    assert len(examples) == len(episode.turns) == 3
    end = [agent.tokenizer.eos_token_id]
    for example, turn in zip(examples, episode.turns):
        assert example.prompt_ids == turn.query_ids  # the prefix is part of the prompt
        response = turn.response[len("Answer:"):]
        assert example.completion_ids == agent.tokenizer(response, add_special_tokens=False)["input_ids"] + end
        assert example.labels == [IGNORE_INDEX] * len(turn.query_ids) + example.completion_ids


def test_a_message_without_the_response_prefix_is_refused(tiny, bare_pm):
    from llamagym.errors import UsageError

    agent = echo_agent(tiny, bare_pm)
    with pytest.raises(UsageError, match="does not start with the agent's response prefix 'Answer:'"):
        conversation_examples(agent, [{"role": "user", "content": "The number is 2."},
                                      {"role": "assistant", "content": "2"}])


def test_unique_keeps_the_first_of_each_prompt_and_answer():
    a, b, c = Example([1, 2], [3]), Example([1, 2], [4]), Example([1], [2, 3])
    assert unique_examples([a, b, Example([1, 2], [3]), c, Example([1], [2, 3])]) == [a, b, c]


def completion_logprob(agent, example):
    ids = torch.tensor([example.input_ids])
    with torch.no_grad():
        logits = agent.model.pretrained_model(input_ids=ids).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    return float(logprobs[len(example.prompt_ids) - 1:].sum())


def demonstrations(agent):
    return [example for number in range(6)
            for example in conversation_examples(agent, [{"role": "system", "content": "Repeat the number."},
                                                         {"role": "user", "content": f"The number is {number}."},
                                                         {"role": "assistant", "content": f"Answer: {number}"}])]


def test_trl_keeps_the_response_only_labels(tiny, bare_pm, tmp_path):
    agent = echo_agent(tiny, bare_pm)
    examples = demonstrations(agent)
    trainer = sft_trainer(agent, examples, SFTSettings(batch_size=2), str(tmp_path), show_progress=False)
    prepared = sorted(zip(trainer.train_dataset["input_ids"], trainer.train_dataset["labels"]))
    assert prepared == sorted((e.input_ids, e.labels) for e in examples)


def test_the_response_loss_equals_trls_own_loss(tiny, bare_pm, tmp_path):
    from trl import SFTTrainer

    agent = echo_agent(tiny, bare_pm)
    torch.nn.init.normal_(agent.model.pretrained_model.get_base_model().model.layers[0].mlp.up_proj.lora_B.default
                          .weight)  # a trained adapter, not the identity
    examples = demonstrations(agent)[:4] + [Example(demonstrations(agent)[0].prompt_ids[:9], [40, 41, 2])]
    ours = sft_trainer(agent, examples, SFTSettings(batch_size=5), str(tmp_path / "a"), show_progress=False)
    features = [ours.train_dataset[i] for i in range(len(examples))]
    batch = ours.data_collator(features)
    assert batch["prefix_ids"] is not None  # the system prompt ran once for the batch
    trl_own = SFTTrainer(model=agent.model.pretrained_model, args=ours.args, train_dataset=ours.train_dataset,
                         processing_class=agent.tokenizer)
    with torch.no_grad():
        loss = ours.compute_loss(agent.model.pretrained_model, batch)
        expected = trl_own.compute_loss(agent.model.pretrained_model, trl_own.data_collator(features))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_fine_tuning_raises_the_likelihood_of_the_demonstrated_answers(tiny, bare_pm):
    agent = echo_agent(tiny, bare_pm)
    examples = demonstrations(agent)
    frozen = {n: p.detach().clone() for n, p in agent.model.named_parameters() if "lora_" not in n}
    before = [completion_logprob(agent, e) for e in examples]
    history = fine_tune(agent, examples, SFTSettings(epochs=10, learning_rate=1e-2, batch_size=3), show_progress=False)
    after = [completion_logprob(agent, e) for e in examples]
    # the tiny model's tied embeddings (frozen under LoRA) keep its logits small, so the gain is modest but certain
    assert all(a > b + 0.3 for a, b in zip(after, before)) and sum(after) > sum(before) + 3.0, (before, after)
    losses = [row["loss"] for row in history if "loss" in row]
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in agent.model.named_parameters() if n in frozen)
    assert not agent.model.training


@pytest.fixture(scope="module")
def warm_start(llamagym_tiny_model_dir, tmp_path_factory):
    """Expert demonstrations collected and fine-tuned on, through the command line."""
    root = tmp_path_factory.mktemp("warm")
    data, out = root / "expert.jsonl", root / "sft"
    result = invoke("collect", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", llamagym_tiny_model_dir,
                    "--policy", "expert", "--episodes", 24, "-o", data, "-q")
    assert result.exit_code == 0, result.output
    result = invoke("sft", data, "--model", llamagym_tiny_model_dir, "--lora-r", 2, "--batch-size", 8, "-o", out,
                    "-q")
    assert result.exit_code == 0, result.output
    return root, result.output


def test_sft_writes_an_adapter_that_eval_and_run_start_from(warm_start, llamagym_tiny_model_dir):
    from safetensors.torch import load_file

    from llamagym.config import RunConfig, build
    from llamagym.run.setup import build_agent

    root, output = warm_start
    out = root / "sft"
    assert "--init-adapter" in output and (out / "adapter" / "adapter_config.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conversations"] == 24 and summary["examples"] >= 24
    assert json.loads((out / "config.json").read_text())["config"]["lora"]["r"] == 2
    assert (out / "sft_metrics.jsonl").read_text().count('"loss"') >= 1

    config = build(RunConfig, {"agent": "blackjack", "env": "Blackjack-v1", "model": str(llamagym_tiny_model_dir),
                               "init_adapter": str(out)})
    agent = build_agent(config)
    saved = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    from peft import get_peft_model_state_dict

    loaded = get_peft_model_state_dict(agent.model.pretrained_model)
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # trained, not a fresh adapter

    evaluated = invoke("eval", "--checkpoint", out, "--episodes", 4, "--num-envs", 2, "--json", "-q")
    assert evaluated.exit_code == 0, evaluated.output
    run = root / "run"
    result = invoke("run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", llamagym_tiny_model_dir,
                    "--init-adapter", out, "--episodes", 4, "--num-envs", 2, "--batch-size", 2,
                    "--mini-batch-size", 2, "--ppo-epochs", 1, "-o", run, "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["config"]["init_adapter"] == str(out)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist; write one with `llamagym collect`"),
    ("{not json", "x.jsonl:1 is not JSON"),
    ('{"return": 1}', 'x.jsonl:1 has no conversation: each line needs "messages"'),
])
def test_bad_data_is_one_line(tmp_path, content, message):
    data = tmp_path / "x.jsonl"
    if content is not None:
        data.write_text(content + "\n")
    result = invoke("sft", data, "--agent", "blackjack", "--env", "Blackjack-v1", "-o", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_nothing_to_train_on_leaves_no_output(warm_start, llamagym_tiny_model_dir, tmp_path):
    root, _ = warm_start
    result = invoke("sft", root / "expert.jsonl", "--model", llamagym_tiny_model_dir, "--min-return", 5, "-o",
                    tmp_path / "out", "-q")
    assert result.exit_code == 2 and "no assistant turns to train on" in result.output
    assert not (tmp_path / "out").exists()


def test_init_adapter_must_hold_an_adapter(tmp_path):
    result = invoke("run", "--agent", "blackjack", "--env", "Blackjack-v1", "--init-adapter", tmp_path, "-o",
                    tmp_path / "run")
    assert result.exit_code == 2 and "holds no adapter" in result.output
