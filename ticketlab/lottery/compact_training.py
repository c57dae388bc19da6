"""`train.kernels compact` (and `auto`): a job whose mask removes whole channels trains as its compact network.

Channel tickets (prune.unit channel) zero every entry of a removed channel, so the network computes what a
physically smaller one computes (`ticketlab.pruning.compact`). Training that smaller network instead of the masked
full one does the same arithmetic minus the multiplications by zero: on Conv-2 at 26% of the channels one training
step is ~8x cheaper (docs/performance.md). The job's files do not change: the model arrives and leaves full-sized,
its trained values written back into the kept positions, and the removed entries stay exactly 0.

Results agree with the masked dense kernels up to rounding (smaller sums add in another order). Removed channels'
BatchNorm running statistics keep their values from the job's start (the full network's would decay towards the
statistics of a channel that is always 0); no output reads them. The checkpoint of a partial job holds the compact
network, which a resume rebuilds from the same start and mask. Jobs that take rewind snapshots (the dense job),
change their mask while training, train data-parallel or draw dropout noise (whose shape is the network's) train
as before, on the masked full network; `kernels.json` in the job directory says which way each job trained.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.models.conv import SeededDropout
from ticketlab.pruning.channel_groups import channel_groups
from ticketlab.pruning.compact import compact_model, removable_channels
from ticketlab.store import read_json, write_json
from ticketlab.training.bookkeeping import CHECKPOINT_FILE
from ticketlab.training.kernel_choice import CHOICE_FILE
from ticketlab.training.masked_step import apply_masks

_INDEX_BASE = 4096  # positions travel through float32 tensors as two parts below 2**24, so every index stays exact


@dataclass
class CompactCopy:
    """A compact copy of a masked network and, per tensor of its state dict, where its entries sit in the full one."""

    model: nn.Module
    positions: dict[str, torch.Tensor]  # state name -> flat indices into the full tensor (floating tensors only)
    full_numels: dict[str, int]  # state name -> entries of the full tensor

    def gather(self, name: str, full: torch.Tensor) -> torch.Tensor:
        """`full` (a tensor shaped like the full network's `name`: a mask, optimizer state) at the kept entries."""
        small = self.model.state_dict()[name]
        return full.reshape(-1)[self.positions[name].to(full.device)].view(small.shape)

    def masks(self, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: self.gather(name, mask) for name, mask in masks.items()}

    def optimizer_state(self, flat: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        """`optimizer_tensors` of the full network's optimizer, for the compact one's (same parameter order)."""
        if flat is None:
            return None
        names = [name for name, _ in self.model.named_parameters()]
        small = {}
        for key, value in flat.items():
            index, _ = key.split(".", 1)
            name = names[int(index)]
            shaped_like_parameter = value.dim() > 0 and value.numel() == self.full_numels[name]
            small[key] = self.gather(name, value) if shaped_like_parameter else value  # Adam's step count stays
        return small

    @torch.no_grad()
    def write_back(self, full_model: nn.Module) -> None:
        """Copy the compact network's state into `full_model`'s kept entries (the rest keep their values)."""
        full_state = full_model.state_dict()
        for name, value in self.model.state_dict().items():
            target = full_state[name]
            if name in self.positions:
                target.view(-1)[self.positions[name].to(target.device)] = value.reshape(-1).to(target.dtype)
            else:
                target.copy_(value)  # integer buffers (BatchNorm's batch count)


def compact_copy(model: nn.Module, masks: dict[str, torch.Tensor]) -> CompactCopy | None:
    """The compact copy of `model` without the channels that `masks` removes for good (the model's values play no
    part: an entry that is 0 now but not masked may grow). None when the model has no channel groups or the masks
    remove no channel."""
    try:
        groups = channel_groups(model)
    except ConfigError:
        return None
    if not groups:
        return None
    probe = copy.deepcopy(model)  # the masks as values: 1 where an entry may be nonzero
    with torch.no_grad():
        for name, value in probe.state_dict().items():
            if value.is_floating_point():
                value.copy_(masks[name].to(value.dtype) if name in masks else torch.ones_like(value))
    removable = removable_channels(probe, groups)
    if not any(bool(removed.any()) for removed in removable.values()):
        return None
    keep = {name: ~removed for name, removed in removable.items()}
    small = compact_model(model, keep)
    high = _positions_part(model, keep, lambda index: index // _INDEX_BASE)
    low = _positions_part(model, keep, lambda index: index % _INDEX_BASE)
    positions = {name: high[name] * _INDEX_BASE + low[name] for name in high}
    return CompactCopy(small, positions, {name: value.numel() for name, value in model.state_dict().items()})


def _positions_part(model: nn.Module, keep: dict[str, torch.Tensor], part) -> dict[str, torch.Tensor]:
    """Compact a copy of `model` whose floating entries hold `part(their flat index)`: the kept entries' parts."""
    probe = copy.deepcopy(model)
    with torch.no_grad():
        for value in probe.state_dict().values():
            if value.is_floating_point():
                index = torch.arange(value.numel(), device=value.device).view(value.shape)
                value.copy_(part(index).to(value.dtype))
    return {name: value.round().long().reshape(-1) for name, value in compact_model(probe, keep).state_dict().items()
            if value.is_floating_point()}


_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
                  SeededDropout)


def has_dropout(model: nn.Module) -> bool:
    """Whether training draws dropout noise (its shape, hence its values, would change with the network's width)."""
    return any(isinstance(module, _DROPOUT_TYPES) and module.p > 0 for module in model.modules())


def train_as_compact(train, model: nn.Module, data, config, *, masks: dict[str, torch.Tensor],
                     optimizer_state=None, job_dir: Path | None = None, **options):
    """`train(model, data, config, masks=..., ...)` (a task's trainer), on the compact copy of `model` where
    `config.kernels` is 'compact' or 'auto' and the job can train that way (module docstring); `model` ends trained
    either way. The way is recorded in the job's kernels.json, and a job resumed from a checkpoint continues the
    way it started."""
    small = None
    if (_may_compact(config, job_dir) and not options.get("snapshot_steps") and options.get("mask_schedule") is None
            and options.get("group") is None and not has_dropout(model)):
        small = compact_copy(model, masks)
    if job_dir is not None and (config.kernels == "compact" or small is not None):
        record = {"kernels": config.kernels, "sparse_layers": [], "compact": small is not None,
                  "parameters": sum(parameter.numel() for parameter in model.parameters())}
        if small is not None:
            record["compact_parameters"] = sum(parameter.numel() for parameter in small.model.parameters())
        job_dir.mkdir(parents=True, exist_ok=True)
        write_json(job_dir / CHOICE_FILE, record)
    if small is None:
        return train(model, data, config, masks=masks, optimizer_state=optimizer_state, job_dir=job_dir, **options)
    apply_masks(model, masks)  # what the trainer does first; the removed entries stay as they are from here on
    result = train(small.model, data, config, masks=small.masks(masks),
                   optimizer_state=small.optimizer_state(optimizer_state), job_dir=job_dir, **options)
    small.write_back(model)
    return result


def _may_compact(config, job_dir: Path | None) -> bool:
    """Whether the job may train compact: `train.kernels` asks for it ('compact', or 'auto': compact wins at every
    channel level measured), and a checkpoint it resumes from was written that way (its shapes are the network's)."""
    if config.kernels not in ("compact", "auto"):
        return False
    if job_dir is None or not (job_dir / CHECKPOINT_FILE).exists():
        return True
    try:
        return read_json(job_dir / CHOICE_FILE).get("compact") is True
    except (OSError, ValueError, AttributeError):
        return False
