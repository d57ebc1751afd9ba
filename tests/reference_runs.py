"""Seeded tiny-model runs whose outputs must not change when the code is reorganised: every non-timing field of
`metrics.jsonl` and `episodes.jsonl`, and the trained adapter's weights (as a digest), for each case below.

    python tests/reference_runs.py record    # write this CPU's reference file from the code as it is now
    python tests/reference_runs.py check     # compare the code as it is now against that file

`tests/test_reference_runs.py` runs the check for every case. Bit-identical holds on one kind of CPU only: the
vector instructions torch's kernels use (AVX2, AVX512) decide the order of floating-point sums, so the same code
gives outputs that differ in the last bits from one kind to the other. There is one reference file per kind,
`tests/data/reference_runs-<CAPABILITY>.json` (torch's `get_cpu_capability()`), each recorded from the code before
a change, on that kind of CPU. The AVX512 file was recorded at f202ad1, the commit before the one-loop redesign,
and re-recorded at 58421d0 (old log-probs from the sampler); the AVX2 file at ef82533. Re-record them only for a
change that means to alter training, from the commit before it (`git archive` it, put its `core` and `plugins/*`
first on PYTHONPATH and run its `tests/reference_runs.py record`).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels use here: AVX2, or AVX512, told apart by AVX512-FP16, whose
    kernels round differently in the eighth digit (an AMD EPYC with AVX512-BF16 and an AVX512-FP16 CPU recorded
    different outputs from the same code)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if not capability.startswith("AVX512"):
        return capability
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    return "AVX512-FP16" if "avx512_fp16" in flags else "AVX512"


def reference_file(capability: str | None = None) -> Path:
    return HERE / "data" / f"reference_runs-{capability or cpu_capability()}.json"


FAULTS = HERE / "llamagym_with_faults.py"

BLACKJACK = ["--agent", "blackjack", "--env", "Blackjack-v1", "--num-envs", "2", "--batch-size", "2",
             "--mini-batch-size", "2", "--ppo-epochs", "2", "--max-new-tokens", "3", "--lora-r", "2",
             "--learning-rate", "0.01", "--checkpoint-every", "2", "--seed", "3", "--device", "cpu",
             "--precision", "fp32", "--no-preset"]
TICTACTOE = ["--agent", "tictactoe", "--env", "tictactoe_v3", "--num-envs", "2", "--batch-size", "2",
             "--mini-batch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "2", "--lora-r", "2",
             "--learning-rate", "0.01", "--checkpoint-every", "1", "--seed", "5", "--device", "cpu",
             "--precision", "fp32", "--no-preset"]

# name -> the `llamagym run` flags (besides --model and -o); "kill" cases are SIGKILLed at a PPO update, then resumed
CASES: dict[str, dict] = {
    "blackjack-gae": {"args": [*BLACKJACK, "--episodes", "8"]},
    "blackjack-gae-free-text": {"args": [*BLACKJACK, "--episodes", "6", "--no-constrained",
                                         "--invalid-action-penalty", "-0.5"]},
    "blackjack-grpo": {"args": [*BLACKJACK, "--episodes", "8", "--advantage", "grpo", "--group-size", "2"]},
    "blackjack-reinforce": {"args": [*BLACKJACK, "--episodes", "8", "--advantage", "reinforce"]},
    "blackjack-killed-resumed": {"args": [*BLACKJACK, "--episodes", "8"], "kill_at": "update:3"},
    "blackjack-two-processes": {"args": [*BLACKJACK, "--episodes", "8", "--num-processes", "2"]},
    "tictactoe-selfplay": {"args": [*TICTACTOE, "--episodes", "6", "--play", "selfplay", "--pool-size", "2",
                                    "--pool-rate", "0.5", "--snapshot-every", "1"]},
    "tictactoe-opponent": {"args": [*TICTACTOE, "--episodes", "6", "--play", "opponent", "--opponent", "random"]},
}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONHASHSEED": "0"}


def _llamagym(*args: str) -> list[str]:
    return [sys.executable, "-c", "from llamagym.cli import main; main()", *args]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[3:])} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")


def _run_killed(args: list[str], pause: str, scratch: Path) -> None:
    """Start the run under the fault script, SIGKILL it once it pauses at `pause`."""
    paused = scratch / "paused"
    env = {**_env(), "LLAMAGYM_TEST_PAUSE": pause, "LLAMAGYM_TEST_PAUSED": str(paused),
           "LLAMAGYM_TEST_RELEASE": str(scratch / "never")}
    process = subprocess.Popen([sys.executable, str(FAULTS), *args], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not paused.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the run ended before pausing at {pause}: {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the run never paused at {pause}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)


def _rows(path: Path) -> list[dict]:
    timing = ("time", "wall")
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(timing)}
            for line in path.read_text().splitlines() if line.strip()]


def _adapter_digest(run_dir: Path) -> dict[str, str]:
    from safetensors.torch import load_file

    digests = {}
    for file in sorted((run_dir / "adapter").rglob("adapter_model.safetensors")):
        tensors = load_file(str(file))
        digest = hashlib.sha256()
        for name in sorted(tensors):
            digest.update(name.encode())
            digest.update(tensors[name].contiguous().numpy().tobytes())
        digests[str(file.parent.relative_to(run_dir))] = digest.hexdigest()
    return digests


def run_case(name: str, model_dir: Path, scratch: Path) -> dict:
    """Run case `name` on the tiny model in `model_dir`; its outputs as the reference file stores them."""
    case = CASES[name]
    out = scratch / name
    args = ["run", *case["args"], "--model", str(model_dir), "-o", str(out), "-q"]
    if "kill_at" in case:
        _run_killed(args, case["kill_at"], scratch)
        _run(_llamagym("run", "--resume", str(out), "-q"))
    else:
        _run(_llamagym(*args))
    return {"metrics": _rows(out / "metrics.jsonl"), "episodes": _rows(out / "episodes.jsonl"),
            "adapter": _adapter_digest(out)}


def canonical(outputs: dict) -> str:
    """One text per case, so that NaNs compare equal and the first difference is easy to find."""
    return json.dumps(outputs, indent=1, sort_keys=True)


def tiny_model_dir(scratch: Path) -> Path:
    from llamagym.testing import save_tiny_model

    return save_tiny_model(scratch / "tiny-model")


def main(mode: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_dir = tiny_model_dir(scratch)
        outputs = {name: run_case(name, model_dir, scratch) for name in CASES}
    path = reference_file()
    if mode == "record":
        path.parent.mkdir(exist_ok=True)
        path.write_text(canonical(outputs) + "\n")
        print(f"wrote {path}")
        return 0
    reference = json.loads(path.read_text())
    failed = [name for name in CASES if canonical(outputs[name]) != canonical(reference[name])]
    print("identical" if not failed else f"differ: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "check"))
