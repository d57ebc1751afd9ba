"""One process of a two-process run whose environment fails in process 1 only (started by torchrun:
`python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dp_faults_worker.py OUT MODEL_DIR`). Each
process writes the error it stopped with to OUT/rankN.txt."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import fault_plugin  # noqa: E402

from llamagym.errors import TrainingError  # noqa: E402
from llamagym.plugins.manager import get_plugin_manager  # noqa: E402
from llamagym.run.setup import resolve_config  # noqa: E402
from llamagym.run.training import train  # noqa: E402

SETTINGS = {"agent": "blackjack", "env": "EvenSeedsFail-v0", "episodes": 40, "num_envs": 1, "device": "cpu",
            "precision": "fp32", "seed": 3, "max_env_errors": 3, "checkpoint_every": 1,
            "ppo": {"batch_size": 2, "mini_batch_size": 2, "ppo_epochs": 1},
            "generation": {"max_new_tokens": 3}, "lora": {"r": 2, "alpha": 4}}


def main(out: Path, model_dir: str) -> None:
    get_plugin_manager().register(fault_plugin, name="fault_plugin")
    config = resolve_config({**SETTINGS, "model": model_dir}, use_preset=False)
    try:
        train(config, out / "run", show_progress=False)
        message = "finished"
    except TrainingError as exc:
        message = str(exc)
    (out / f"rank{os.environ['RANK']}.txt").write_text(message)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
