"""Data parallelism under torchrun: one job's global batch split across processes, gradients all-reduced by
DistributedDataParallel (torch's own engine: no home-made reducer or process group).

`torchrun --nproc-per-node N -m ticketlab find ...` starts N processes with RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address in their environment; `from_environment` joins them into one process group (gloo on CPU, NCCL
on CUDA, one GPU per local rank). Rank 0 is the leader: it walks the job graph, reads and writes the run directory
and tells the other ranks what to train (`ticketlab.lottery.data_parallel`); the others hold no files, so a node
needs the dataset but not the run directory.

Exactness: every rank draws the step's global batch indices from the same seed and takes its contiguous slice of
`batch_size / world_size` examples, so the union of the shards is the single-process batch, in order. Each rank's
loss is the mean over its shard and DDP averages the gradients, which is the gradient of the global mean (the
summation order differs, see README). Every rank then applies the same masked optimizer step to the same averaged
gradient, so weights and masks stay identical: `check_identical` verifies it at evaluation points.

BatchNorm: SyncBatchNorm on CUDA (batch statistics of the global batch, as a single process computes them); on
CPU torch's SyncBatchNorm does not run, so statistics are per rank (each shard's own) and DDP broadcasts rank 0's
running averages before every forward. Messages between ranks are JSON and raw tensors, never pickles.
"""

from __future__ import annotations

import atexit
import json
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ticketlab.errors import ConfigError

# Followers wait in a broadcast while the leader computes masks, trains a job alone or writes the report; a dead
# rank is noticed by torchrun, which stops the others, so the wait may be long.
WAIT_TIMEOUT = timedelta(hours=12)


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by torchrun (WORLD_SIZE > 1); torch-free, for the CLI."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def is_leader_process() -> bool:
    """Rank 0 of a torchrun launch, or a process that was not launched by torchrun."""
    return os.environ.get("RANK", "0") in ("", "0")


@dataclass
class DataParallelGroup:
    """This process's place among the ranks training one job together, and the collectives they use."""

    rank: int
    world_size: int
    device: torch.device
    followers_waiting: bool = True  # leader's view: followers wait for a message (not inside a job's collectives)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    # --- the training loop's side -----------------------------------------------------------------------

    def shard(self, global_batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a step's global batch (sizes divide exactly, see `check_batch_size`)."""
        size = len(global_batch) // self.world_size
        return global_batch[self.rank * size : (self.rank + 1) * size]

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` (trained in place) inside DistributedDataParallel; BatchNorm becomes SyncBatchNorm on CUDA.

        DDP broadcasts rank 0's parameters and buffers here, so every rank starts from the leader's weights."""
        for module in model.modules():  # seeded dropout draws the global batch's mask and keeps this rank's rows
            if hasattr(module, "batch_shard"):
                module.batch_shard = (self.rank, self.world_size)
        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps children in place, keeps the Parameters
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def sync_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> int:
        """Give every rank the leader's weights, buffers, optimizer state and step (after the leader resumed from
        a checkpoint or received a rewind state); returns the step."""
        from ticketlab.training.optim import load_optimizer_tensors, optimizer_tensors

        header = self.broadcast_json({"step": step} if self.is_leader else None)
        state = self.broadcast_tensors(model.state_dict() if self.is_leader else None)
        optimizer_state = self.broadcast_tensors(optimizer_tensors(optimizer) if self.is_leader else None)
        if not self.is_leader:
            model.load_state_dict(state)
            if optimizer_state:
                load_optimizer_tensors(optimizer, optimizer_state)
        return int(header["step"])

    def mean(self, value: float) -> float:
        """The mean over ranks of a number (each rank's mean training loss -> the global batch's)."""
        reduced = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(reduced)
        return float(reduced) / self.world_size

    @torch.no_grad()
    def check_identical(self, model: nn.Module, masks: dict[str, torch.Tensor], step: int) -> None:
        """RuntimeError (on every rank) unless all ranks hold the same masks and the same weights, and every pruned
        weight is zero: a cheap all-gather of per-rank checksums (sums in float64 and counts of zeros)."""
        parameters = dict(model.named_parameters())
        checks = []
        for name, mask in masks.items():
            kept = mask.to(self.device) != 0
            positions = torch.arange(kept.numel(), device=self.device, dtype=torch.float64)
            checks += [float((positions * kept.flatten()).sum()), float((parameters[name][~kept] != 0).sum())]
        checks += [float(parameter.double().sum()) for parameter in parameters.values()]
        local = torch.tensor(checks, dtype=torch.float64, device=self.device)
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(gathered, local)
        for rank, other in enumerate(gathered):
            if not torch.equal(other, gathered[0]):
                raise RuntimeError(f"data-parallel ranks disagree after step {step}: rank {rank}'s masks or weights "
                                   "differ from rank 0's")
        pruned_nonzero = local[1 : 2 * len(masks) : 2]
        if len(masks) and pruned_nonzero.sum() != 0:
            raise RuntimeError(f"pruned weights are not zero after step {step}")

    # --- messages between the leader and the followers -----------------------------------------------------

    def broadcast_json(self, message: dict | None) -> dict:
        """The leader's JSON-serializable `message`, on every rank (followers pass None)."""
        payload = json.dumps(message).encode() if self.is_leader else b""
        length = torch.tensor([len(payload)], dtype=torch.int64, device=self.device)
        dist.broadcast(length, 0)
        buffer = (torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(self.device) if self.is_leader
                  else torch.empty(int(length.item()), dtype=torch.uint8, device=self.device))
        if len(buffer):
            dist.broadcast(buffer, 0)
        return json.loads(bytes(buffer.cpu().numpy()).decode())

    def broadcast_tensors(self, tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """The leader's named tensors on every rank (followers pass None), on this rank's device."""
        manifest = None
        if self.is_leader:
            manifest = {name: [list(value.shape), str(value.dtype).removeprefix("torch.")]
                        for name, value in tensors.items()}
        manifest = self.broadcast_json(manifest)
        received = {}
        for name, (shape, dtype) in manifest.items():
            if self.is_leader:
                value = tensors[name].detach().to(self.device).contiguous()
            else:
                value = torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)
            dist.broadcast(value, 0)
            received[name] = value
        return received

    def abandon(self) -> None:
        """Leader: leave the process group now, so ranks blocked in a job's collectives see the connection close
        and stop at once, instead of waiting (up to WAIT_TIMEOUT) for a leader that ended with an error."""
        _destroy_process_group()

    def agree(self, value: int, what: str) -> None:
        """ConfigError on every rank unless all ranks pass the same integer (e.g. a config's hash)."""
        values = torch.tensor([value, -value], dtype=torch.int64, device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        if int(values[0]) != value or int(values[1]) != -value:
            raise ConfigError(f"the torchrun processes disagree on {what}; start every rank with the same command")


def check_batch_size(batch_size: int, world_size: int) -> None:
    """ConfigError unless the global batch splits into equal shards (then shards' mean gradients average exactly)."""
    if batch_size % world_size:
        raise ConfigError(f"train.batch_size {batch_size} does not split across {world_size} torchrun processes; "
                          f"use a batch size divisible by {world_size}")


def from_environment(device: torch.device) -> DataParallelGroup | None:
    """Join the process group torchrun describes in the environment (None when not launched with WORLD_SIZE > 1).

    `device` is the resolved device type: CPU ranks use gloo; CUDA ranks use NCCL on GPU LOCAL_RANK."""
    if not launched_by_torchrun():
        return None
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # once per process, kept for later calls (a second init on the same rendezvous would wait forever) and
        # destroyed at exit, as torch asks
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=WAIT_TIMEOUT)
        atexit.register(_destroy_process_group)
    return DataParallelGroup(rank=rank, world_size=world_size, device=device)


def _destroy_process_group() -> None:
    """Destroy the default process group if it still exists (at exit, or earlier by `abandon`)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def lost_connection(error: BaseException) -> bool:
    """Whether a collective failed because another rank's process is gone (closed or reset connection)."""
    text = str(error)
    return isinstance(error, getattr(dist, "DistNetworkError", ())) or any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))
