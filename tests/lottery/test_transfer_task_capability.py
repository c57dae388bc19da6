"""transfer asks a source run's task whether its tickets transfer (Task.transfers) instead of testing its name."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError
from ticketlab.lottery import transfer as transfer_module
from ticketlab.presets import preset
from ticketlab.tasks import load_task
from ticketlab.tasks.classification import TASK


def _run_directory_of(config, tmp_path):
    """A run directory holding only the config.json `find` writes (no data, no jobs): enough to be refused."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = {"hash": config.hash(), "fingerprint": "", "config": config.to_dict()}
    (run_dir / "config.json").write_text(json.dumps(record))
    return run_dir


@pytest.mark.parametrize("preset_name,task", [("lstm_tiny", "language"), ("transformer_tiny", "translation"),
                                              ("ppo_tiny", "rl")])
def test_transfer_refuses_runs_of_tasks_whose_tickets_do_not_transfer(tmp_path, capsys, preset_name, task):
    assert load_task(task).transfers is False
    run_dir = _run_directory_of(preset(preset_name), tmp_path)
    before = sorted(path.name for path in tmp_path.rglob("*"))
    assert main(["transfer", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"is a {task!r} run, whose tickets do not transfer to other data" in error
    assert sorted(path.name for path in tmp_path.rglob("*")) == before  # nothing written, nothing trained


def test_the_refusal_is_the_tasks_answer_not_its_name(tmp_path, monkeypatch):
    assert TASK.transfers is True
    run_dir = _run_directory_of(ExperimentConfig(), tmp_path)
    assert transfer_module.load_source(run_dir).config.task == "classification"
    monkeypatch.setattr(transfer_module, "load_task", lambda name: dataclasses.replace(TASK, transfers=False))
    with pytest.raises(ConfigError, match="'classification' run, whose tickets do not transfer"):
        transfer_module.load_source(run_dir)


def test_random_ticket_mask_keeps_the_source_n_m_pattern():
    """The random-ticket control of an N:M source is N:M too (exactly N of every M where the ticket is that
    sparse), with the ticket's per-tensor counts; a tensor denser than N/M (a dense output layer) is drawn freely."""
    import numpy as np
    import torch

    from ticketlab.lottery.transfer_jobs import random_ticket_mask

    generator = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(6, 8, generator=generator), "b": torch.rand(3, 8, generator=generator)}
    counts = {"a": 24, "b": 20}  # a: exactly half (2:4), b: denser than 2:4 allows
    mask = random_ticket_mask(scores, counts, (2, 4))
    assert {name: int(value.sum()) for name, value in mask.items()} == counts
    groups = mask["a"].numpy().reshape(-1, 4)
    assert (groups.sum(axis=1) == 2).all()
    best = np.argsort(-scores["a"].numpy().reshape(-1, 4), axis=1, kind="stable")[:, :2]
    expected = np.zeros_like(groups)
    np.put_along_axis(expected, best, 1, axis=1)
    assert (groups == expected).all()
    assert torch.equal(random_ticket_mask(scores, counts, None)["b"], mask["b"])
