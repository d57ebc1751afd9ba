"""`llamagym` as the reliability tests drive it in a subprocess: the fault plugin installed, and a pause at a
named point so a test can signal or kill the process exactly there, with no timing race.

LLAMAGYM_TEST_PAUSE=POINT:N pauses the Nth time POINT is reached: the file named by LLAMAGYM_TEST_PAUSED is
created, then the process waits until the file named by LLAMAGYM_TEST_RELEASE exists (forever if unset).
Points: `update` (a PPO update is about to start), `checkpoint-write` (a checkpoint's weights are staged, its
trainer state not yet), `checkpoint-publish` (a checkpoint is in place, the `latest` pointer not yet moved).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def pause_at(point: str, owner: object, attribute: str) -> None:
    wanted, _, nth = os.environ.get("LLAMAGYM_TEST_PAUSE", "").partition(":")
    if wanted != point:
        return
    original, calls = getattr(owner, attribute), [0]

    def paused(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(nth or 1):
            wait_for_release()
        return original(*args, **kwargs)

    setattr(owner, attribute, paused)


def wait_for_release() -> None:
    Path(os.environ["LLAMAGYM_TEST_PAUSED"]).touch()
    release = os.environ.get("LLAMAGYM_TEST_RELEASE")
    while not (release and Path(release).exists()):
        time.sleep(0.01)


def main() -> None:
    import fault_plugin
    from llamagym.run import checkpoint
    from llamagym.algo import trainer
    from llamagym.cli import main as cli_main
    from llamagym.plugins.manager import get_plugin_manager

    get_plugin_manager().register(fault_plugin, name="fault_plugin")
    pause_at("update", trainer.PPOTrainer, "step")
    pause_at("checkpoint-write", checkpoint, "_write_trainer_state")
    pause_at("checkpoint-publish", checkpoint, "_point_latest")
    cli_main()


if __name__ == "__main__":
    main()
