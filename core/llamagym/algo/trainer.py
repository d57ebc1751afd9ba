"""The PPO update: score the sampled tokens, turn rewards into per-token advantages (GAE across the turns of
each episode, KL penalty against the frozen reference, a truncated episode bootstrapped from the value of the state
it was cut at), then several epochs of clipped updates."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ContextManager, Protocol, TypeVar, cast

import torch

from llamagym.algo import ppo
from llamagym.algo.advantages import EpisodeSteps, check_data_parallel, make_estimator
from llamagym.algo.reference import ReferenceCache, sequence_key
from llamagym.algo.trunk_cache import TrunkCache
from llamagym.agent.choices import restrict_logits
from llamagym.config import PPOConfig
from llamagym.agent.episode import Episode
from llamagym.errors import ConfigError, TrainingError
from llamagym.policy.generation import MIN_SHARED_PREFIX, left_pad, shared_prefix_length
from llamagym.policy.trunk import frozen_layers
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead

if TYPE_CHECKING:
    from llamagym.distributed.global_batch import Share

_T = TypeVar("_T")
# lr_schedule = adaptive keeps the step size within these multiples of learning_rate. Never above it: an update's
# first minibatches are taken at the sampling policy itself (approx_kl 0), and a rate free to grow on them made
# one Blackjack update move approx_kl 0.79 and the policy certain everywhere by the next.
ADAPTED_RANGE = (1e-3, 1.0)


def _present(value: _T | None) -> _T:
    """`value`, which the update has set by now: a scored sample's tensors, a bootstrapped sample's prompt."""
    assert value is not None
    return value


@dataclass
class Sample:
    """One turn as PPO sees it; the tensors are per response token."""

    query: list[int]
    response: list[int]
    reward: float
    episode: int
    allowed: list[list[int]] | None = None  # constrained decoding: the tokens allowed at each response position
    bootstrap_query: list[int] | None = None  # last turn of a truncated episode: the prompt of the state it was cut at
    bootstrap_value: float = 0.0  # that state's value under the current policy (`_score`; 0 if not scored)
    sampled_logprobs: list[float] | None = None  # the sampler's own (`Turn.logprobs`), if it recorded them
    sampled_values: list[float] | None = None
    trunk: torch.Tensor | None = None  # frozen-trunk states after the update's shared prefix (`PPOTrainer._trunk`)
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return len(self.query) + len(self.response)

    @cached_property
    def key(self) -> bytes:
        """What its reference log-probs, and its new ones, depend on (`sequence_key`)."""
        return sequence_key(self.query, self.response, self.allowed)


@dataclass
class Batch:
    """Left-padded sequences after an optional shared prefix; `mask` marks the response tokens among the last K
    positions."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    prefix_ids: torch.Tensor | None = None
    allowed: list[tuple[int, int, list[int]]] = field(default_factory=list)  # (row, position among K, tokens)
    trunk: torch.Tensor | None = None  # (n, width, hidden): the rows' frozen-trunk states, left-padded as input_ids

    @property
    def k(self) -> int:
        return self.targets.shape[1]


def make_batch(samples: Sequence[Sample], pad_token_id: int, device: torch.device, prefix_length: int = 0
               ) -> Batch:
    """Stack samples; the first `prefix_length` tokens (shared by all, prompt only) are kept apart as a prefix."""
    prefix = None
    if prefix_length >= MIN_SHARED_PREFIX:
        prefix = torch.tensor([samples[0].query[:prefix_length]], dtype=torch.long, device=device)
    ids, attention = left_pad([(s.query + s.response)[prefix_length if prefix is not None else 0:]
                               for s in samples], pad_token_id, device)
    if prefix is not None:
        attention = torch.cat([attention.new_ones((len(samples), prefix_length)), attention], dim=1)
    k = max(len(s.response) for s in samples)
    mask = torch.zeros((len(samples), k), device=device)
    allowed: list[tuple[int, int, list[int]]] = []
    for row, sample in enumerate(samples):
        start = k - len(sample.response)
        mask[row, start:] = 1.0
        allowed.extend((row, start + j, tokens) for j, tokens in enumerate(sample.allowed or ()))
    return Batch(ids, attention, ids[:, -k:], mask, prefix, allowed)


def episode_samples(episodes: Sequence[Episode]) -> list[Sample]:
    """Every turn with a response as a sample, episode by episode; the last one of a truncated episode carries its
    bootstrap prompt."""
    samples = []
    for number, episode in enumerate(episodes):
        turns = [Sample(t.query_ids, t.response_ids, float(t.reward), number, t.allowed, sampled_logprobs=t.logprobs,
                        sampled_values=t.values)
                 for t in episode.turns if t.response_ids]
        if turns:
            turns[-1].bootstrap_query = episode.bootstrap_query
        samples.extend(turns)
    return samples


def stack_right(tensors: Sequence[torch.Tensor], k: int, device: torch.device) -> torch.Tensor:
    """Per-sample tensors (of response tokens, or of any positions with features after them) placed right-aligned
    in a (n, k, ...) tensor, matching `Batch.mask` (or the left-padded `Batch.input_ids`)."""
    out = torch.zeros((len(tensors), k, *tensors[0].shape[1:]), dtype=tensors[0].dtype, device=device)
    for row, tensor in enumerate(tensors):
        out[row, k - tensor.shape[0]:] = tensor.to(device)
    return out


@dataclass
class Repeats:
    """The samples of an update that share prompt, answer and constraint. Their new log-probs and values are the
    same, so one row of the training forward pass serves them all; each keeps its own old log-probs, advantages
    and returns, so the loss is the per-sample loss."""

    samples: list[Sample]

    @property
    def length(self) -> int:
        return self.samples[0].length

    @property
    def count(self) -> int:
        return len(self.samples)


def group_repeats(samples: Sequence[Sample], merge: bool = True) -> list[Repeats]:
    """`samples` grouped by sequence, in order of first occurrence (`merge` False: one group per sample)."""
    if not merge:
        return [Repeats([sample]) for sample in samples]
    groups: dict[bytes, Repeats] = {}
    for sample in samples:
        groups.setdefault(sample.key, Repeats([])).samples.append(sample)
    return list(groups.values())


class _HasLength(Protocol):
    @property
    def length(self) -> int: ...


_Sized = TypeVar("_Sized", bound=_HasLength)  # a Sample, Repeats, or what stands for one (`global_batch._Slot`)


def length_grouped_minibatches(samples: Sequence[_Sized], size: int, rng: random.Random,
                               group_factor: int = 8, count: Callable[[_Sized], int] = lambda _: 1
                               ) -> list[list[_Sized]]:
    """Shuffled minibatches in which sequences of similar length sit together, so little compute goes to
    padding: shuffle, cut into groups of `group_factor` minibatches, sort each group by length, slice it.
    A minibatch closes once the `count` of its items (1 each, or the samples a `Repeats` holds) reaches `size`."""
    order = list(samples)
    rng.shuffle(order)
    batches: list[list[_Sized]] = []
    group = size * group_factor
    for start in range(0, len(order), group):
        chunk = sorted(order[start:start + group], key=lambda s: s.length)
        batches.extend(_cut(chunk, size, count))
    rng.shuffle(batches)
    return batches


def _cut(items: list[_Sized], size: int, count: Callable[[_Sized], int]) -> list[list[_Sized]]:
    """Consecutive slices of `items`, each closed once its items' counts add up to `size`."""
    slices: list[list[_Sized]] = []
    current: list[_Sized] = []
    filled = 0
    for item in items:
        current.append(item)
        filled += count(item)
        if filled >= size:
            slices.append(current)
            current, filled = [], 0
    if current:
        slices.append(current)
    return slices


class PPOTrainer:
    """Owns the optimiser and the KL controller; `step(episodes)` runs one PPO update and returns its stats.

    `sync` (a `llamagym.distributed.global_batch.GlobalBatch`, None in one process) makes the update data-parallel: every
    statistic, minibatch and gradient is then taken over the samples of all processes.
    """

    def __init__(self, model: AutoModelForCausalLMWithValueHead, config: PPOConfig, *, pad_token_id: int,
                 temperature: float = 1.0, autocast: Callable[[], ContextManager] = nullcontext,
                 seed: int = 0, sync: Any = None):
        self.model, self.config, self.sync = model, config, sync
        self.pad_token_id, self.temperature, self.autocast = pad_token_id, temperature, autocast
        self.rng = random.Random(seed)
        self.learning_rate = config.learning_rate or (1e-4 if model.is_peft_model else 1e-5)
        self.planned_updates: int | None = None  # lr_schedule = linear decays to zero over these
        self.adapted_rate = self.learning_rate  # lr_schedule = adaptive: the step size the KL feedback has set
        self.optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=self.learning_rate,
                                           weight_decay=config.weight_decay)
        self.kl_controller = (ppo.AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
                              if config.adaptive_kl else ppo.FixedKLController(config.kl_coef))
        self.estimator = make_estimator(config)  # ppo.advantage: gae, grpo or reinforce
        self._ref_model: AutoModelForCausalLMWithValueHead | None = None
        self.reference_cache = ReferenceCache(config.reference_cache)
        self.trunk_cache = TrunkCache(config.trunk_cache_mb)
        self._trunk_layers: int | None = None  # `trunk_layers`, found at the first update
        if config.gradient_checkpointing:
            model.base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.updates = 0
        self.nonfinite_updates = 0
        self.prefix_length = 0
        self.on_progress: Callable[[str], None] | None = None  # told each phase of an update: "scoring", "epoch k/n"

    @property
    def ref_model(self) -> AutoModelForCausalLMWithValueHead | None:
        """The frozen reference for full fine-tuning, copied at the first update (an acting-only agent never
        pays for it); None with LoRA, where the reference is the same weights with the adapters switched off."""
        if self._ref_model is None and not self.model.is_peft_model:
            self._ref_model = self._reference_copy(self.model)
        return self._ref_model

    @staticmethod
    def _reference_copy(model: AutoModelForCausalLMWithValueHead) -> AutoModelForCausalLMWithValueHead:
        """A frozen deep copy of the policy's language model."""
        try:
            from trl.experimental.utils import create_reference_model
        except ImportError:  # older trl 1.x
            from trl import create_reference_model

        return AutoModelForCausalLMWithValueHead(create_reference_model(model.pretrained_model))

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def trunk_layers(self) -> int:
        """F, the layers below the first adapted one, run once per sequence (`ppo.frozen_trunk`); 0: none."""
        if self._trunk_layers is None:
            usable = (self.config.frozen_trunk and not self.config.gradient_checkpointing
                      and self.model.is_peft_model)
            self._trunk_layers = frozen_layers(self.model) if usable else 0
        return self._trunk_layers

    def step(self, episodes: Sequence[Episode]) -> dict[str, float]:
        """One PPO update on the turns of `episodes`; returns flat `ppo/...` statistics."""
        started = time.perf_counter()
        samples = episode_samples(episodes)
        n_samples, n_tokens = ((len(samples), sum(len(s.response) for s in samples)) if self.sync is None
                               else self.sync.totals(samples))
        if not n_samples:
            return {}
        if self.sync is not None:
            check_data_parallel(self.config)
        self._set_learning_rate()
        self.prefix_length = self._shared_prefix(samples)
        self._progress("scoring")
        score_stats = self._trunk(samples)
        score_stats.update(self._score(samples))
        kl_stats = self._advantages(samples, len(episodes), [e.group for e in episodes])
        finite = all(torch.isfinite(_present(s.advantages)).all() for s in samples)
        if not (finite if self.sync is None else self.sync.all_finite(finite)):
            return self._skip_update("non-finite advantages", started)
        stats = self._optimise(samples)
        if stats.pop("ppo/finite_steps") == 0:
            return self._skip_update("non-finite loss or gradient in every minibatch", started)
        self.nonfinite_updates = 0
        self.kl_controller.update(kl_stats["ppo/kl"], n_samples)
        self.updates += 1
        stats.update(kl_stats)
        stats.update(score_stats)
        if self.estimator.uses_values and samples:  # this process's samples: how well the critic predicted them
            stats["ppo/explained_variance"] = ppo.explained_variance(
                torch.cat([_present(s.values) for s in samples]), torch.cat([_present(s.returns) for s in samples]))
        stats.update({"ppo/kl_coef": self.kl_controller.value, "ppo/samples": n_samples,
                      "ppo/shared_prefix_tokens": self.prefix_length, "ppo/tokens": n_tokens,
                      "ppo/update": self.updates, "ppo/learning_rate": self.optimizer.param_groups[0]["lr"],
                      "time/ppo_s": time.perf_counter() - started})
        return stats

    def _progress(self, phase: str) -> None:
        if self.on_progress is not None:
            self.on_progress(phase)

    def _set_learning_rate(self) -> None:
        """The step size of the next update: constant; linearly annealed so that late updates, taken on a
        nearly trained policy, move it little (the last planned update uses 1/planned of the base rate); or, with
        the adaptive schedule, where the KL feedback of the last step left it (`_adapt_learning_rate`)."""
        if self.config.lr_schedule == "constant":
            return
        if self.config.lr_schedule == "adaptive":
            self._apply_learning_rate(self.adapted_rate)
            return
        if not self.planned_updates:
            raise ConfigError("ppo.lr_schedule = linear needs the run's length: `llamagym run` sets it; with the "
                              "Agent API set agent.trainer.planned_updates, or use lr_schedule = constant or adaptive")
        fraction = max(0.0, 1.0 - self.updates / self.planned_updates)
        self._apply_learning_rate(self.learning_rate * fraction)

    def _apply_learning_rate(self, rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def _adapt_learning_rate(self, approx_kl: float) -> None:
        """lr_schedule = adaptive, the KL feedback of rsl_rl's and rl_games' PPO: after an optimiser step whose
        minibatches moved the policy further than twice `lr_kl_target` from the sampling policy (approx_kl), the
        next step is 1.5 times smaller; below half the target it grows 1.5 times, back up to `learning_rate` at
        most (`ADAPTED_RANGE`). An update that would make the policy certain in a few steps is slowed at once, and
        late ones, whose gradients are small, are not starved as the linear schedule starves them."""
        target = self.config.lr_kl_target
        if not math.isfinite(approx_kl):
            return
        low, high = self._adapted_bounds()
        if approx_kl > 2.0 * target:
            self.adapted_rate = max(self.adapted_rate / 1.5, low)
        elif approx_kl < 0.5 * target:
            self.adapted_rate = min(self.adapted_rate * 1.5, high)
        self._apply_learning_rate(self.adapted_rate)

    def _adapted_bounds(self) -> tuple[float, float]:
        return self.learning_rate * ADAPTED_RANGE[0], self.learning_rate * ADAPTED_RANGE[1]

    def _shared_prefix(self, samples: list[Sample]) -> int:
        """The prompt prefix every sample of this update shares (system prompt, template), computed once per
        forward pass instead of once per sample; one length per update keeps every pass's numerics identical."""
        if not self.model.splits_decoder or self.config.gradient_checkpointing:
            return 0  # checkpointed layers run without a KV cache
        queries = [s.query for s in samples] + [_present(s.bootstrap_query) for s in self._bootstrapped(samples)]
        return shared_prefix_length(queries, keep=1)

    def _bootstrapped(self, samples: Sequence[Sample]) -> list[Sample]:
        """The last turns of truncated episodes, whose bootstrap value GAE reads (the other estimators ignore it)."""
        if not self.estimator.uses_values:
            return []
        return [s for s in samples if s.bootstrap_query is not None]

    def _batch(self, samples: Sequence[Sample]) -> Batch:
        """The samples stacked, with their frozen-trunk states when every one has them."""
        batch = make_batch(samples, self.pad_token_id, self.device, self.prefix_length)
        if samples and all(s.trunk is not None for s in samples):
            batch.trunk = stack_right([_present(s.trunk) for s in samples], batch.input_ids.shape[1], self.device)
        return batch

    @torch.no_grad()
    def _trunk(self, samples: list[Sample]) -> dict[str, float]:
        """Each sample's states entering the first adapted layer, after the shared prefix (`trunk_layers`): kept
        from an earlier update where the sequence was seen, else from one no-gradient pass of the layers below.
        Every forward pass of this update, the reference's too (its adapters are off above the trunk only), then
        runs the adapted layers alone."""
        layer = self.trunk_layers
        if not layer:
            return {}
        first = self.prefix_length if self.prefix_length >= MIN_SHARED_PREFIX else 0  # a batch row's first position
        missing: dict[bytes, list[Sample]] = {}
        for sample in samples:
            sample.trunk = self.trunk_cache.get(sample.key, first)
            if sample.trunk is None:
                missing.setdefault(sample.key, []).append(sample)
        self.model.eval()
        ordered = sorted(missing.values(), key=lambda repeats: repeats[0].length)
        size = self.config.forward_batch_size
        for start in range(0, len(ordered), size):
            chunk = ordered[start:start + size]
            batch = self._batch([repeats[0] for repeats in chunk])
            with self.autocast():
                states = self.model.trunk_states(batch.input_ids, batch.attention_mask, layer, batch.prefix_ids)
            for row, repeats in enumerate(chunk):
                own = states[row, states.shape[1] - (repeats[0].length - first):].clone()
                self.trunk_cache.put(repeats[0].key, first, own)
                for sample in repeats:
                    sample.trunk = own
        computed = sum(len(repeats) for repeats in ordered)
        return {"ppo/trunk_layers": layer, "ppo/trunk_computed_fraction": computed / max(len(samples), 1)}

    def _skip_update(self, reason: str, started: float) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_updates += 1
        if self.nonfinite_updates >= self.config.max_nonfinite_updates:
            raise TrainingError(f"{self.nonfinite_updates} updates in a row were skipped ({reason}); lower "
                                f"the learning rate or raise max_grad_norm's strictness and resume from the "
                                f"last checkpoint")
        return {"ppo/skipped_update": 1.0, "time/ppo_s": time.perf_counter() - started}

    @torch.no_grad()
    def _score(self, samples: list[Sample]) -> dict[str, float]:
        """Old log-probs and values: the sampler's own where it recorded them (`ppo.sampler_logprobs`), else from
        a forward pass of the current policy; reference log-probs with adapters off, from the cache where the
        sequence was scored before; the value of the state each truncated episode was cut at."""
        self.model.eval()
        unscored = [s for s in samples if not self._take_sampled(s)]
        missing = []
        for sample in samples:
            sample.ref_logprobs = self.reference_cache.get(sample.key)
            if sample.ref_logprobs is None:
                missing.append(sample)
        in_both = {id(s) for s in unscored} & {id(s) for s in missing}
        both = [s for s in unscored if id(s) in in_both]  # one pass scores policy and reference for these
        self._score_chunks(both, policy=True, reference=True)
        self._score_chunks([s for s in unscored if id(s) not in in_both], policy=True, reference=False)
        self._score_chunks([s for s in missing if id(s) not in in_both], policy=False, reference=True)
        scored = {id(s) for s in missing}
        for sample in samples:
            if id(sample) in scored:
                self.reference_cache.put(sample.key, _present(sample.ref_logprobs))
        self._score_bootstraps(self._bootstrapped(samples))
        n = max(len(samples), 1)  # data-parallel: this process may hold none of the batch
        return {"ppo/rescored_fraction": len(unscored) / n, "ppo/reference_scored_fraction": len(missing) / n}

    def _take_sampled(self, sample: Sample) -> bool:
        """Use the sampler's log-probs and values as the old ones, if it recorded them and the config allows."""
        n = len(sample.response)
        if not (self.config.sampler_logprobs and sample.sampled_logprobs is not None
                and sample.sampled_values is not None and len(sample.sampled_logprobs) == n):
            return False
        sample.old_logprobs = torch.tensor(sample.sampled_logprobs, dtype=torch.float32)
        sample.values = torch.tensor(sample.sampled_values, dtype=torch.float32)
        return True

    def _score_chunks(self, samples: list[Sample], policy: bool, reference: bool) -> None:
        """Forward passes over `samples` in length-sorted chunks: the policy's log-probs and values, the
        reference's log-probs, or both from the same batches."""
        ordered = sorted(samples, key=lambda s: s.length)
        size = self.config.forward_batch_size
        for start in range(0, len(ordered), size):
            chunk = ordered[start:start + size]
            batch = self._batch(chunk)
            if policy:
                logprobs, values, _ = self._forward(self.model, batch)
            if reference:
                ref_logprobs = self._reference_logprobs(batch)
            for row, sample in enumerate(chunk):
                n = len(sample.response)
                if policy:
                    sample.old_logprobs = logprobs[row, -n:].float().cpu()
                    sample.values = values[row, -n:].float().cpu()
                if reference:
                    sample.ref_logprobs = ref_logprobs[row, -n:].float().cpu()

    def _score_bootstraps(self, samples: list[Sample]) -> None:
        """Each sample's `bootstrap_value`: its bootstrap prompt is scored with a one-token (padding) response, whose
        value comes from the hidden state before it, at the prompt's last position: where the next answer starts."""
        ordered = sorted(samples, key=lambda s: len(_present(s.bootstrap_query)))
        size = self.config.forward_batch_size
        for start in range(0, len(ordered), size):
            chunk = ordered[start:start + size]
            probes = [Sample(_present(s.bootstrap_query), [self.pad_token_id], 0.0, s.episode) for s in chunk]
            values = self._forward(self.model, self._batch(probes))[1]
            for row, sample in enumerate(chunk):
                sample.bootstrap_value = float(values[row, -1])

    def _reference_logprobs(self, batch: Batch) -> torch.Tensor:
        if self.ref_model is not None:
            return self._forward(self.ref_model, batch)[0]
        with self.model.reference():
            return self._forward(self.model, batch)[0]

    def _forward(self, model: AutoModelForCausalLMWithValueHead, batch: Batch, with_entropy: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        from trl.trainer.utils import entropy_from_logits, selective_log_softmax  # trl: seconds to import

        trunk = (self.trunk_layers, batch.trunk) if batch.trunk is not None and model is self.model else None
        with self.autocast():
            logits, values = model.response_logits_and_values(batch.input_ids, batch.attention_mask, batch.k,
                                                              batch.prefix_ids, trunk)
        logits = restrict_logits(logits / self.temperature, batch.allowed)
        logprobs = selective_log_softmax(logits, batch.targets)
        entropy = entropy_from_logits(logits) if with_entropy else None
        return logprobs, values, entropy

    def _advantages(self, samples: list[Sample], n_episodes: int, groups: Sequence[Hashable] | None = None
                    ) -> dict[str, float]:
        """Per-token rewards (KL penalty, env reward on each turn's last token), then the advantage estimator (GAE
        per episode by default) over each episode's tokens; `groups` are the episodes' groups (GRPO). An episode
        ends with discount 0, or gamma times its bootstrap value if it was truncated."""
        cfg, kl_coef = self.config, self.kl_controller.value
        by_episode: list[list[Sample]] = [[] for _ in range(n_episodes)]
        for sample in samples:
            by_episode[sample.episode].append(sample)
        kl_sums, non_score = [], []
        episodes: list[tuple[list[Sample], EpisodeSteps]] = []
        for number, turns in enumerate(by_episode):
            if not turns:
                continue
            rewards, values, discounts = [], [], []
            for index, sample in enumerate(turns):
                kl = ppo.kl_per_token(_present(sample.old_logprobs), _present(sample.ref_logprobs),
                                      cfg.kl_estimator)
                kl_sums.append(float(kl.sum()))
                reward = -kl_coef * kl
                non_score.append(float(reward.sum()))
                reward[-1] += sample.reward
                discount = torch.ones_like(reward)
                ended = index == len(turns) - 1 and sample.bootstrap_query is None
                discount[-1] = 0.0 if ended else cfg.gamma
                rewards.append(reward)
                values.append(_present(sample.values))
                discounts.append(discount)
            episodes.append((turns, EpisodeSteps(torch.cat(rewards), torch.cat(values), torch.cat(discounts),
                                                 groups[number] if groups else None, turns[-1].bootstrap_value)))
        estimates = self.estimator.estimate([steps for _, steps in episodes])
        for (turns, _), (advantages, returns) in zip(episodes, estimates):
            offset = 0
            for sample in turns:
                n = len(sample.response)
                sample.advantages = advantages[offset:offset + n]
                sample.returns = returns[offset:offset + n]
                offset += n
        if cfg.whiten_advantages and self.sync is not None:
            self.sync.whiten(samples)
        elif cfg.whiten_advantages:
            flat = torch.cat([_present(s.advantages) for s in samples])
            whitened = ppo.masked_whiten(flat, torch.ones_like(flat))
            offset = 0
            for sample in samples:
                n = len(sample.response)
                sample.advantages = whitened[offset:offset + n]
                offset += n
        if self.sync is not None:
            return self.sync.advantage_stats(samples, kl_sums, non_score)
        return {"ppo/kl": sum(kl_sums) / len(kl_sums), "ppo/kl_reward": sum(non_score) / len(non_score),
                "ppo/returns_mean": float(torch.cat([_present(s.returns) for s in samples]).mean()),
                "ppo/values_mean": float(torch.cat([_present(s.values) for s in samples]).mean())}

    def _optimise(self, samples: list[Sample]) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        totals: dict[str, float] = {}
        finite_steps = steps = epochs_run = 0
        grad_norms: list[float] = []
        merge = cfg.merge_repeats and self.sync is None  # data-parallel minibatches are planned per sample
        repeats = group_repeats(samples, merge=merge)
        for _ in range(cfg.ppo_epochs):
            epochs_run += 1
            self._progress(f"epoch {epochs_run}/{cfg.ppo_epochs}")
            batches = (length_grouped_minibatches(repeats, cfg.mini_batch_size, self.rng, count=_count)
                       if self.sync is None else self.sync.minibatches(samples, cfg.mini_batch_size, self.rng))
            epoch_kl, window_kl, window_finite = [], [], True
            for index, minibatch in enumerate(batches):
                stats = self._minibatch_loss(minibatch)
                window_finite &= stats.pop("_finite") > 0
                epoch_kl.append(stats["ppo/approx_kl"])
                window_kl.append(stats["ppo/approx_kl"])
                _accumulate(totals, stats)
                if (index + 1) % cfg.gradient_accumulation_steps == 0 or index == len(batches) - 1:
                    norm = self._optimizer_step(window_finite)
                    steps += 1
                    if norm is not None:
                        finite_steps += 1
                        grad_norms.append(norm)
                        if cfg.lr_schedule == "adaptive":
                            self._adapt_learning_rate(sum(window_kl) / len(window_kl))
                    window_finite, window_kl = True, []
            if cfg.target_approx_kl and sum(epoch_kl) / len(epoch_kl) > cfg.target_approx_kl:
                break
        self.model.eval()
        count = totals.pop("_count")
        out = {key: value / count for key, value in totals.items()}
        if merge:
            out["ppo/forward_rows"] = len(repeats)  # the distinct sequences each epoch trains on
        out.update({"ppo/epochs": epochs_run, "ppo/finite_steps": finite_steps,
                    "ppo/skipped_steps": steps - finite_steps,
                    "ppo/grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else float("nan")})
        return out

    def _minibatch_loss(self, minibatch: Sequence[Repeats] | Share) -> dict[str, float]:
        """The clipped PPO loss of one minibatch, backpropagated; a `Repeats` is one forward row whose log-probs,
        values and entropy each of its samples reads (`rows`), so the loss is the per-sample one."""
        cfg = self.config
        if self.sync is not None and not minibatch:  # another process holds this whole minibatch
            return self.sync.minibatch_stats(None, cast("Share", minibatch))
        groups = (cast("list[Repeats]", minibatch) if self.sync is None
                  else group_repeats(cast("Share", minibatch), merge=False))
        members = [sample for group in groups for sample in group.samples]
        batch = self._batch([group.samples[0] for group in groups])
        logprobs, values, entropy = self._forward(self.model, batch, with_entropy=True)
        assert entropy is not None  # with_entropy=True
        mask = batch.mask
        if len(members) > len(groups):  # repeated sequences: every sample reads its sequence's row
            rows = torch.tensor([row for row, group in enumerate(groups) for _ in group.samples], device=self.device)
            logprobs, values, entropy, mask = logprobs[rows], values[rows], entropy[rows], mask[rows]
        old_logprobs = stack_right([_present(s.old_logprobs) for s in members], batch.k, self.device)
        old_values = stack_right([_present(s.values) for s in members], batch.k, self.device)
        advantages = stack_right([_present(s.advantages) for s in members], batch.k, self.device)
        returns = stack_right([_present(s.returns) for s in members], batch.k, self.device)
        pg_loss, pg_stats = ppo.policy_loss(logprobs, old_logprobs, advantages, mask, cfg.cliprange)
        vf_loss, vf_clipfrac = ppo.value_loss(values, old_values, returns, mask, cfg.cliprange_value)
        mean_entropy = ppo.masked_mean(entropy, mask)
        vf_coef = cfg.vf_coef if self.estimator.uses_values else 0.0  # grpo, reinforce: no value head to train
        loss = pg_loss + vf_coef * vf_loss - cfg.entropy_coef * mean_entropy
        finite = bool(torch.isfinite(loss))
        if finite:
            # this process's share of the tokens (with `sync`, a minibatch is a `Share`)
            weight = 1.0 if self.sync is None else cast("Share", minibatch).weight
            (loss * weight / cfg.gradient_accumulation_steps).backward()
        stats = {"ppo/loss/policy": pg_loss.item(), "ppo/loss/value": vf_loss.item(), "ppo/loss/total": loss.item(),
                "ppo/entropy": mean_entropy.item(), "ppo/clipfrac": float(pg_stats["clipfrac"]),
                "ppo/approx_kl": float(pg_stats["approx_kl"]), "ppo/ratio": float(pg_stats["ratio_mean"]),
                "ppo/value_clipfrac": float(vf_clipfrac), "_finite": float(finite)}
        if not self.estimator.uses_values:  # no value head is trained: no value loss to report
            del stats["ppo/loss/value"], stats["ppo/value_clipfrac"]
        return stats if self.sync is None else self.sync.minibatch_stats(stats, minibatch)

    def _optimizer_step(self, losses_finite: bool) -> float | None:
        """Clip and apply the accumulated gradient; a non-finite loss or gradient is thrown away unapplied.
        Returns the gradient norm if the step was applied, else None."""
        norm = None
        if losses_finite:
            if self.sync is not None:
                self.sync.all_reduce_gradients(self.model.trainable_parameters())
            max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else math.inf
            norm = float(torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(), max_norm))
            if math.isfinite(norm):
                self.optimizer.step()
            else:
                norm = None
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "kl_controller": self.kl_controller.state_dict(),
                "updates": self.updates, "rng": self.rng.getstate(), "estimator": self.estimator.state_dict(),
                "reference_cache": self.reference_cache.state_dict(), "adapted_rate": self.adapted_rate}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_controller.load_state_dict(state["kl_controller"])
        self.updates = state["updates"]
        self.rng.setstate(state["rng"])
        self.estimator.load_state_dict(state.get("estimator", {}))
        self.reference_cache.load_state_dict(state.get("reference_cache", {}))
        self.adapted_rate = state.get("adapted_rate", self.learning_rate)

    def restore(self, state: dict) -> None:
        """`load_state_dict` for a resumed run: the saved optimiser, KL controller and update count, but the
        learning rate and weight decay configured now (a resumed run may change them). The adaptive schedule keeps
        the step size it had reached, within the range the configured learning rate sets."""
        configured = [{"lr": g["lr"], "weight_decay": g.get("weight_decay")} for g in self.optimizer.param_groups]
        self.load_state_dict(state)
        for group, settings in zip(self.optimizer.param_groups, configured):
            group.update({k: v for k, v in settings.items() if v is not None})
        low, high = self._adapted_bounds()  # a resumed run may set another learning rate
        self.adapted_rate = min(max(self.adapted_rate, low), high)


def _count(group: Repeats) -> int:
    return group.count


def _accumulate(totals: dict[str, float], stats: dict[str, float]) -> None:
    for key, value in stats.items():
        totals[key] = totals.get(key, 0.0) + value
    totals["_count"] = totals.get("_count", 0) + 1
