"""load_export rebuilds an export's network by asking its task (Task.model_for_shapes), never by its name."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import ticketlab.tasks
from ticketlab.config import ExperimentConfig, ModelConfig
from ticketlab.errors import ConfigError
from ticketlab.export import load_export
from ticketlab.models import build_model, initialize
from ticketlab.store import save_tensors
from ticketlab.tasks.classification import TASK

INPUT_SHAPE, CLASSES = (1, 8, 8), 3


def _dense_export(tmp_path, config):
    """A dense export file as `export_ticket` writes it: a state dict and the metadata that rebuilds it."""
    network = initialize(build_model(config.model.name, INPUT_SHAPE, CLASSES, width=config.model.width),
                         config.model.init, 5)
    path = tmp_path / "ticket.safetensors"
    save_tensors(path, network.state_dict(), metadata={
        "format": "dense", "config": config.to_json(), "input_shape": json.dumps(INPUT_SHAPE),
        "num_classes": str(CLASSES), "job": "trial_0/level_00/dense"})
    return path, network


def test_the_task_rebuilds_the_exported_network(tmp_path):
    config = ExperimentConfig(model=ModelConfig(name="conv2", width=2))
    path, network = _dense_export(tmp_path, config)
    rebuilt = load_export(path)
    assert not rebuilt.training
    inputs = torch.randn(4, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), network.eval()(inputs))


def test_a_task_that_cannot_rebuild_is_refused_in_one_line(tmp_path, monkeypatch):
    config = ExperimentConfig(model=ModelConfig(name="conv2", width=2))
    path, network = _dense_export(tmp_path, config)
    monkeypatch.setattr(ticketlab.tasks, "load_task", lambda name: dataclasses.replace(TASK, model_for_shapes=None))
    with pytest.raises(ConfigError, match=r"cannot be rebuilt from its metadata; pass a module"):
        load_export(path)
    assert load_export(path, model=network) is network  # with the architecture passed in, the task is not asked
