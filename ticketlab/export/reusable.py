"""A ticket to reuse without ticketlab: a directory of plain safetensors files keyed by the model's own parameter
names (its `state_dict()` names) and a small JSON that says what they are.

    ticket/
      mask.safetensors   # name -> bool mask of every pruned tensor (True: kept)
      init.safetensors   # the full state_dict the ticket trains from (θ0, or θk when rewound), masked
      final.safetensors  # the full state_dict after training, masked
      ticket.json        # model and task, sparsity per layer and in total, variant, level, trial, rewind step,
                         # source run directory and config hash, ticketlab version, sha256 of the three files

Reuse: build a fresh model of the same class, `model.load_state_dict(load_file("init.safetensors"))`, and keep
the pruned weights at zero while training (multiply the weights and their gradients by the mask after each step,
or `torch.nn.utils.prune.custom_from_mask(module, "weight", mask)`). Works for every task (no forward pass is
needed), unlike the checked model exports of `ticketlab.export.api`.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.errors import ConfigError
from ticketlab.lottery.integrity import read_finished_job, read_run_config, refuse_run_artifact
from ticketlab.store import load_tensors, save_tensors, write_json
from ticketlab.version import __version__

TICKET_FILES = ("mask.safetensors", "init.safetensors", "final.safetensors", "ticket.json")
FORMAT = "ticketlab-ticket/1"


@dataclass(frozen=True)
class ReusableTicket:
    """The directory written and what ticket.json says."""

    directory: Path
    description: dict


def export_reusable_ticket(run_dir: str | Path, level: int, trial: int = 0, variant: str | None = None, *,
                           output: str | Path) -> ReusableTicket:
    """Write job (trial, level, variant) of a run (level 0: the dense network; `variant` None: the winning
    ticket) as a reusable ticket directory `output` (see the module docstring). The run and the job are checked
    first (IntegrityError naming a damaged file); `output` must be a new or empty directory, or an earlier
    ticket export (replaced whole); it is written under a temporary name and renamed into place."""
    from ticketlab.lottery.keys import DENSE, JobKey
    from ticketlab.lottery.variants import variant_names, winning_ticket

    run_dir, output = Path(run_dir), Path(output)
    config = read_run_config(run_dir)
    variant = variant or winning_ticket()
    if variant not in variant_names():
        raise ConfigError(f"unknown variant {variant!r}; allowed: {', '.join(variant_names())}")
    for label, value in (("level", level), ("trial", trial)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{label} {value!r} must be an integer >= 0")
    _check_output(output, run_dir)
    key = JobKey(trial, 0, DENSE) if level == 0 else JobKey(trial, level, variant)
    job_dir = key.directory(run_dir)
    if not (job_dir / "result.json").is_file():
        raise ConfigError(f"job {key.label()} of {run_dir} is not finished (no {job_dir / 'result.json'})")
    record = read_finished_job(job_dir)
    masks = {name: value.bool() for name, value in load_tensors(job_dir / "mask.safetensors").items()}
    init, final = (_masked(load_tensors(job_dir / name), masks)
                   for name in ("weights_init.safetensors", "weights_final.safetensors"))
    layers = {name: {"remaining": int(mask.sum()), "total": mask.numel(),
                     "remaining_percent": 100.0 * int(mask.sum()) / mask.numel()} for name, mask in masks.items()}
    remaining, total = sum(layer["remaining"] for layer in layers.values()), sum(
        layer["total"] for layer in layers.values())
    description = {
        "format": FORMAT, "ticketlab_version": __version__, "task": config.task,
        "model": config.to_dict()["model"], "data": config.data.name, "metric": record.get("metric"),
        "job": key.label(), "variant": key.variant, "level": level, "trial": trial,
        "rewind": config.prune.rewind, "rewind_step": int(record.get("start_step", 0)),
        "total_steps": record.get("final_iteration"),
        "sparsity": {"remaining": remaining, "total": total, "remaining_percent": 100.0 * remaining / total if total
                     else 100.0, "sparsity_percent": 100.0 - 100.0 * remaining / total if total else 0.0,
                     "layers": layers},
        "result": {name: record.get(name) for name in ("early_stop_test_metric", "early_stop_iteration",
                                                       "final_test_metric", "final_iteration")},
        "source": {"run_dir": str(run_dir.resolve()), "config_hash": config.hash(), "job_dir": str(job_dir.resolve())},
        "config": config.to_dict(),
    }
    temporary = output.with_name(f".{output.name}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        save_tensors(temporary / "mask.safetensors", masks)
        save_tensors(temporary / "init.safetensors", init)
        save_tensors(temporary / "final.safetensors", final)
        description["sha256"] = {name: _sha256(temporary / name) for name in TICKET_FILES[:3]}
        write_json(temporary / "ticket.json", description)
        if output.exists():
            shutil.rmtree(output)
        temporary.rename(output)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return ReusableTicket(output, description)


def _check_output(output: Path, run_dir: Path) -> None:
    """`output` may be new, an empty directory or an earlier ticket export; never a run's file or other files."""
    refuse_run_artifact(output, run_dir)
    if output.resolve().is_relative_to(run_dir.resolve()):
        raise ConfigError(f"--output {str(output)!r} is inside run directory {str(run_dir)!r}; choose a path "
                          "outside it")
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {str(output)!r} is a file; the ticket format writes a directory")
    if output.is_dir():
        others = sorted(path.name for path in output.iterdir() if path.name not in TICKET_FILES)
        if others:
            raise ConfigError(f"--output {str(output)!r} holds other files ({', '.join(others[:3])}); give a new or "
                              "empty directory (an earlier ticket export is replaced)")


def _masked(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value * masks[name].to(value.dtype) if name in masks else value for name, value in state.items()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
