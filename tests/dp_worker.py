"""One process of a data-parallel test run, started by torchrun (`python -m torch.distributed.run --standalone
--nproc-per-node 2 tests/dp_worker.py OUT MODEL_DIR`): a real `llamagym run` on a tiny model, recording on every
process the episodes each PPO update used and the trainable weights after it. Process 1 holds back some of its
episodes in updates 2 and 3, so the shares are uneven, then empty; gradient accumulation and the early stop on
`target_approx_kl` are on, so they too must agree across processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from llamagym.config import to_dict
from llamagym.distributed.replicas import Replicas
from llamagym.run.setup import resolve_config
from llamagym.run.training import train

SETTINGS = {"agent": "blackjack", "env": "Blackjack-v1", "episodes": 16, "num_envs": 2, "device": "cpu",
            "precision": "fp32", "checkpoint_every": 2, "seed": 3,
            "ppo": {"batch_size": 2, "mini_batch_size": 1, "ppo_epochs": 3, "learning_rate": 0.01,
                    "gradient_accumulation_steps": 2, "target_approx_kl": 0.001},
            "generation": {"max_new_tokens": 3, "constrained": False},  # free text: several tokens per turn
            "lora": {"r": 2, "alpha": 4}}


def main(out: Path, model_dir: str) -> None:
    rank = int(os.environ["RANK"])
    records: dict = {"initial": None, "updates": []}
    prepare, step = Replicas.prepare, Replicas.train

    def recording_prepare(group, agent, seed):
        prepare(group, agent, seed)
        records["initial"] = [p.detach().clone() for p in agent.model.trainable_parameters()]

    def recording_step(group, agent):
        update = len(records["updates"]) + 1
        if group.rank == 1 and update == 2:
            agent.buffer = agent.buffer[:1]
        if group.rank == 1 and update == 3:
            agent.buffer = []
        episodes = list(agent.buffer)
        stats = step(group, agent)
        records["updates"].append({"episodes": episodes, "stats": stats,
                                   "weights": [p.detach().clone() for p in agent.model.trainable_parameters()]})
        return stats

    Replicas.prepare, Replicas.train = recording_prepare, recording_step
    config = resolve_config({**SETTINGS, "model": model_dir}, use_preset=False)
    summary = train(config, out / "run", show_progress=False)
    records.update(summary=summary, config=to_dict(config))
    torch.save(records, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
