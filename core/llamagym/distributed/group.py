"""The process group of a data-parallel run and the few collectives llamagym needs: sums of small statistics,
gathering small Python objects, broadcasting the starting weights, and summing gradients.

The group is set up by Hugging Face accelerate from what the launcher (`accelerate launch`, torchrun, mpirun)
put in the environment: NCCL between GPUs, gloo between CPU processes. Single-process runs never import this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import PartialState

from llamagym.errors import UsageError

BUCKET_ELEMENTS = 1 << 25  # gradients are summed in flat buckets of at most this many elements (128 MiB fp32)


@dataclass
class DataParallel:
    """This process's place in the group (`rank` of `world_size`) and the device its model lives on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over processes of a short vector of numbers (float64, so counts stay exact)."""
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds on every process."""
        return self.sum([0.0 if flag else 1.0])[0] == 0.0

    def gather(self, value: Any) -> list[Any]:
        """`value` of every process, in rank order (small picklable objects only)."""
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, value)
        return out

    def broadcast_object(self, value: Any) -> Any:
        """Process 0's `value`, on every process."""
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        torch.distributed.barrier()

    def close(self) -> None:
        """Leave the group while the interpreter is whole: gloo's threads left to interpreter shutdown can still
        hold tensors, and freeing them then aborts the process (SIGABRT) after a run that went well."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def broadcast_tensors(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite `tensors` in place with process 0's values (the starting weights of a run)."""
        for bucket in _buckets(list(tensors)):
            flat = torch.cat([t.detach().reshape(-1) for t in bucket])
            torch.distributed.broadcast(flat, src=0)
            with torch.no_grad():
                for tensor, part in zip(bucket, _split(flat, bucket)):
                    tensor.copy_(part)

    def all_reduce_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum every process's gradients into each process's `.grad` (the losses are already weighted by each
        process's share of the tokens, so the sum is the gradient of the global loss). A parameter that has no
        gradient on any process keeps none, as it would in one process."""
        parameters = list(parameters)
        present = self.sum([p.grad is not None for p in parameters])
        kept = [p for p, count in zip(parameters, present) if count > 0]
        for bucket in _buckets(kept):
            flat = torch.cat([p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel())
                              for p in bucket])
            torch.distributed.all_reduce(flat)
            for param, part in zip(bucket, _split(flat, bucket)):
                param.grad = part.clone()


def _buckets(tensors: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Tensors grouped by dtype and device into flat-able buckets of bounded size, in a fixed order."""
    groups: dict[tuple, list[list[torch.Tensor]]] = {}
    for tensor in tensors:
        runs = groups.setdefault((tensor.dtype, tensor.device), [[]])
        if runs[-1] and sum(t.numel() for t in runs[-1]) + tensor.numel() > BUCKET_ELEMENTS:
            runs.append([])
        runs[-1].append(tensor)
    return [bucket for runs in groups.values() for bucket in runs if bucket]


def _split(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    parts = torch.split(flat, [t.numel() for t in like])
    return [part.view_as(t) for part, t in zip(parts, like)]


def process_device(requested: str, local_rank: int) -> str:
    """The device of one process: its own GPU (by LOCAL_RANK) for auto/cuda where there are GPUs, else the CPU."""
    if requested == "cpu":
        return "cpu"
    if requested in ("auto", "cuda"):
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    raise UsageError(f"device {requested!r} cannot be shared by several processes: pass --device auto (each "
                     f"process takes the GPU of its LOCAL_RANK; choose GPUs with CUDA_VISIBLE_DEVICES) or cpu")


def init_data_parallel(requested_device: str = "auto") -> DataParallel:
    """Join the process group the launcher described in the environment (gloo on CPU, NCCL on GPUs)."""
    on_cpu = process_device(requested_device, 0) == "cpu"
    state = PartialState(cpu=on_cpu)
    if state.num_processes < 2:
        raise UsageError("this process was not started by a multi-process launcher; use `llamagym run "
                         "--num-processes N`, `accelerate launch -m llamagym run ...` or `torchrun -m llamagym run`")
    device = torch.device(process_device(requested_device, state.local_process_index))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return DataParallel(state.process_index, state.num_processes, state.local_process_index, device)


__all__ = ["DataParallel", "init_data_parallel", "process_device"]
