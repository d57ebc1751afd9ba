"""One PPO update over the samples of every process: N processes holding B episodes each make the update that
one process would make with all N×B (`mini_batch_size` × N samples per minibatch). What is global: the sample
and token counts, the advantage whitening, the KL statistics the controller reads, the minibatch plan (the same
shuffle, drawn by every process from the same generator), each minibatch's loss (every process weights its part
by its share of the minibatch's response tokens, then the gradients are summed), and the minibatch statistics
the early stop reads. A process may hold fewer samples than another, or none: it still takes part in every
collective, the same number of times, so none waits forever."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from llamagym.distributed.group import DataParallel
from llamagym.algo.trainer import Sample, length_grouped_minibatches


@dataclass
class _Slot:
    """Where a sample lives (process, index there) and its sizes, for planning minibatches over all processes."""

    rank: int
    index: int
    length: int
    tokens: int


class Share(list):
    """This process's samples of one global minibatch; `weight` is their share of its response tokens."""

    def __init__(self, samples: Sequence[Sample], weight: float):
        super().__init__(samples)
        self.weight = weight


class GlobalBatch:
    """The collectives `PPOTrainer` calls when it runs in one process of several (its `sync`)."""

    def __init__(self, dp: DataParallel):
        self.dp = dp

    def totals(self, samples: Sequence[Sample]) -> tuple[int, int]:
        """(samples, response tokens) over every process."""
        count, tokens = self.dp.sum([len(samples), sum(len(s.response) for s in samples)])
        return int(count), int(tokens)

    def all_finite(self, finite: bool) -> bool:
        return self.dp.all_true(finite)

    def whiten(self, samples: Sequence[Sample]) -> None:
        """Advantages shifted to mean 0 and scaled to variance 1 over every process's tokens (as
        `ppo.masked_whiten` does over one process's)."""
        # (the trainer has scored every sample by now: its tensors are set)
        local = torch.cat([cast(torch.Tensor, s.advantages) for s in samples]) if samples else torch.zeros(0)
        count, total = self.dp.sum([local.numel(), float(local.double().sum())])
        mean = total / count
        squares = self.dp.sum([float((local.double() - mean).square().sum())])[0]
        variance = squares / (count - 1) if count > 1 else 0.0
        scale = (variance + 1e-8) ** -0.5
        for sample in samples:
            sample.advantages = ((cast(torch.Tensor, sample.advantages).double() - mean) * scale).float()

    def advantage_stats(self, samples: Sequence[Sample], kl_sums: list[float], non_score: list[float]
                        ) -> dict[str, float]:
        """The KL, KL-reward, return and value means over every process (the KL feeds the controller)."""
        kl, kl_reward, count, returns, values, tokens = self.dp.sum([
            sum(kl_sums), sum(non_score), len(kl_sums),
            sum(float(cast(torch.Tensor, s.returns).sum()) for s in samples),
            sum(float(cast(torch.Tensor, s.values).sum()) for s in samples), sum(len(s.response) for s in samples)])
        return {"ppo/kl": kl / count, "ppo/kl_reward": kl_reward / count, "ppo/returns_mean": returns / tokens,
                "ppo/values_mean": values / tokens}

    def minibatches(self, samples: Sequence[Sample], size: int, rng: random.Random) -> list[Share]:
        """This process's part of each global minibatch of `size` × processes samples, planned as one process
        would plan them over all samples in rank order; the list has the same length on every process."""
        sizes = self.dp.gather([(s.length, len(s.response)) for s in samples])
        slots = [_Slot(rank, index, length, tokens) for rank, rows in enumerate(sizes)
                 for index, (length, tokens) in enumerate(rows)]
        shares = []
        for minibatch in length_grouped_minibatches(slots, size * self.dp.world_size, rng):
            mine = [samples[slot.index] for slot in minibatch if slot.rank == self.dp.rank]
            total = sum(slot.tokens for slot in minibatch)
            shares.append(Share(mine, sum(len(s.response) for s in mine) / total))
        return shares

    def minibatch_stats(self, stats: dict[str, float] | None, share: Share) -> dict[str, float]:
        """A minibatch's token-mean statistics over every process (`stats` is None where this process had no part
        of it); `_finite` is 1 only if the loss was finite everywhere."""
        gathered = self.dp.gather((share.weight, stats or {}))
        out: dict[str, float] = {}
        for weight, values in gathered:
            for key, value in values.items():
                if key != "_finite":
                    out[key] = out.get(key, 0.0) + weight * value
        out["_finite"] = float(all(values.get("_finite", 1.0) > 0 for _, values in gathered))
        return out

    def all_reduce_gradients(self, parameters: Any) -> None:
        self.dp.all_reduce_gradients(parameters)


__all__ = ["GlobalBatch", "Share"]
