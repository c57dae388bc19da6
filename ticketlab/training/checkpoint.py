"""The one checkpoint format of every trainer: named groups of tensors ("model", "optim", and what a task adds,
such as an LSTM's hidden state or the early-stopping weights) in one safetensors file, with string metadata
("step" and the task's JSON records). Written atomically with a sha256 of its tensors (`store.save_tensors`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ticketlab.errors import IntegrityError
from ticketlab.store import load_tensors_and_metadata, save_tensors, set_aside


def save_checkpoint_parts(path: Path, parts: dict[str, dict[str, torch.Tensor]], metadata: dict[str, str]) -> None:
    """Save named groups of tensors ("model", "optim", ...) as one safetensors checkpoint: each tensor under
    "<group>.<name>", with `metadata` (strings)."""
    tensors = {f"{group}.{name}": value for group, members in parts.items() for name, value in members.items()}
    save_tensors(path, tensors, metadata=metadata)


def read_checkpoint_parts(path: Path, device, json_keys: tuple[str, ...] = ()) -> tuple[dict, dict] | None:
    """Inverse of save_checkpoint_parts: ({group: {name: tensor}}, metadata with `json_keys` parsed and "step" an
    int), or None when there is no checkpoint or it is damaged (set aside with a one-line warning; the job restarts
    from its start)."""
    if not path.exists():
        return None
    try:
        tensors, metadata = load_tensors_and_metadata(path, device=device)
        metadata = dict(metadata, step=int(metadata["step"]), **{key: json.loads(metadata[key]) for key in json_keys})
    except (IntegrityError, KeyError, TypeError, ValueError) as error:
        set_aside(path, f"{error}; the job restarts from its start")
        return None
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        group, _, member = name.partition(".")
        parts.setdefault(group, {})[member] = value
    return parts, metadata
