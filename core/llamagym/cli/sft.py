"""`llamagym sft`: supervised fine-tuning of the LoRA adapter on collected conversations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from llamagym.cli.group import cli
from llamagym.run.rundir import default_output
from llamagym.run.setup import resolve_config
from llamagym.tools.collect import read_conversations
from llamagym.tools.sft import SFTSettings, run_sft


@cli.command("sft")
@click.argument("data", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--agent", help="agent name [default: the one that collected DATA]")
@click.option("--env", "env", help="environment id [default: the one DATA was collected on]")
@click.option("--model", help="base model [default: the agent's preset, else the embedded default]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file of settings as for run: the [lora] shape and [generation] max_history_turns apply")
@click.option("--no-preset", is_flag=True, help="ignore the agent's recommended settings")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="output directory [default: runs/AGENT-ENV-sft-TIME]")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="passes over the examples")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="examples (assistant turns) per step")
@click.option("--min-return", type=float, help="train only on conversations whose return is at least this")
@click.option("--unique", is_flag=True, help="count an example that repeats (the same prompt and answer) once: "
                                             "cheaper when episodes revisit the same states")
@click.option("--lora-r", type=click.IntRange(min=1), help="adapter rank [default: the config's]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="replace an existing output directory")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
def sft_command(data: tuple[str, ...], agent: str | None, env: str | None, model: str | None,
                config_file: str | None, no_preset: bool, output: str | None, epochs: float, learning_rate: float,
                batch_size: int, min_return: float | None, unique: bool, lora_r: int | None, seed: int,
                overwrite: bool, quiet: bool) -> None:
    """Fine-tune the LoRA adapter on the conversations in DATA (files from `llamagym collect`), loss on the
    assistant's responses only; then `llamagym run --init-adapter OUTPUT` starts PPO from it.

    Every assistant turn is tokenised exactly as the agent prompts the model (history window, chat template,
    response prefix), so the adapter learns the answers in the context where it will give them.
    """
    first = read_conversations(data)[0] if data else {}
    flags: dict[str, Any] = {"agent": agent or first.get("agent"), "env": env or first.get("env"), "seed": seed}
    if model:
        flags["model"] = model
    if lora_r:
        flags["lora"] = {"r": lora_r}
    config = resolve_config({k: v for k, v in flags.items() if v is not None}, config_file,
                            use_preset=not no_preset)
    output_dir = Path(output) if output else default_output(config.agent, f"{config.env}-sft")
    settings = SFTSettings(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, min_return=min_return,
                           unique=unique)
    summary = run_sft(config, list(data), output_dir, settings, overwrite=overwrite, show_progress=not quiet)
    click.echo(f"trained on {summary['examples']} turns of {summary['conversations']} conversations in "
               f"{summary['wall_time_s']:.0f}s; loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}")
    click.echo(f"adapter saved to {summary['adapter']}; start PPO from it with: llamagym run --agent "
               f"{config.agent} --env {config.env} --init-adapter {summary['output']}")
