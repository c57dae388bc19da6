"""Your own task in one file (`ticketlab.tasks.simple.simple_task`): a file of plain functions runs every variant
through the Python API and, imported with `ticketlab --task-module FILE`, through the CLI (find, stability,
export --format ticket, report), with the same run directory and numbers; its numbers are checked against an
independent computation; a bad --task-module is one line and exit status 2."""

from __future__ import annotations

import csv
import json
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ticketlab.cli import main
from ticketlab.config import config_from_dict
from ticketlab.store import load_tensors
from ticketlab.tasks import TASKS, unregister_task
from ticketlab.tasks.user_modules import import_task_module

TASK_FILE = textwrap.dedent('''
    import torch
    from torch import nn

    from ticketlab.tasks.simple import simple_task


    def line(slope=2.0):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(96, 4, generator=generator)
        y = x @ torch.full((4, 1), slope) + 0.1 * torch.randn(96, 1, generator=generator)
        return {"train": (x[:64], y[:64]), "val": (x[64:80], y[64:80]), "test": (x[80:], y[80:])}


    def mse(model, batch):
        return nn.functional.mse_loss(model(batch[0]), batch[1])


    TASK = simple_task(
        "NAME", model=lambda: nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1)),
        data={"line": line, "steep_line": lambda: line(3.0)}, loss=mse,
        evaluate=lambda model, split: {"mse": mse(model, split)}, metric="mse", direction="min")
''')
SETTINGS = ["--train.optimizer", "sgd", "--train.lr", "0.05", "--train.batch_size", "16", "--steps", "24it",
            "--train.eval_every", "8it", "--levels", "2", "--prune.rate", "0.5", "--prune.rewind", "4it"]
VARIANTS = "iterative_reset,random_pruning,iterative_reinit,snip"


@pytest.fixture
def task_file(tmp_path, request):
    """A user's task file named after the test (a module name of its own), imported as --task-module does."""
    name = f"user_{request.node.name}"[:40].replace("[", "_").replace("]", "_").replace("-", "_")
    path = tmp_path / f"{name}.py"
    path.write_text(TASK_FILE.replace("NAME", name))
    yield name, path
    sys.modules.pop(name, None)
    unregister_task(name)


def _rows(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_a_task_file_runs_through_the_api_and_the_cli_alike(task_file, tmp_path, capsys):
    name, path = task_file
    assert main(["--task-module", str(path), "find", "--task", name, "--model.name", name, "--data.name", "line",
                 *SETTINGS, "--variants", VARIANTS, "--trials", "1", "--quiet", "--no-report", "--workers", "1",
                 "--root", str(tmp_path / "cli")]) == 0, capsys.readouterr().err
    [run_dir] = (tmp_path / "cli").iterdir()
    rows = _rows(run_dir / "results.csv")
    assert {row["metric"] for row in rows} == {"mse"} and len(rows) == 4 * 3
    assert TASKS.get(name).source == str(path.resolve())  # what worker processes import again

    from ticketlab.api import find_tickets

    user = sys.modules[name].TASK
    config = user.config(trials=1, variants=VARIANTS.split(","), **{"train.optimizer": "sgd", "train.lr": 0.05,
                         "train.batch_size": 16, "train.steps": "24it", "train.eval_every": "8it",
                         "prune.levels": 2, "prune.rate": 0.5, "prune.rewind": "4it"})
    assert config == config_from_dict(json.loads((run_dir / "config.json").read_text())["config"])
    assert config.run_name() == run_dir.name  # the API's config names the CLI's run: find_tickets reuses its jobs
    api = find_tickets(config, root=tmp_path / "cli", progress=False, report=False)
    assert api.run_dir == run_dir and _rows(api.results_csv) == rows

    # independent check: the dense job's final test MSE from its weights, and exact masks in every ticket
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=generator)
    y = x @ torch.full((4, 1), 2.0) + 0.1 * torch.randn(96, 1, generator=generator)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    dense = run_dir / "trial_0" / "level_00" / "dense"
    model.load_state_dict(load_tensors(dense / "weights_final.safetensors"))
    with torch.no_grad():
        expected = nn.functional.mse_loss(model(x[80:]), y[80:]).item()
    assert json.loads((dense / "result.json").read_text())["final_test_metric"] == pytest.approx(expected, rel=1e-6)
    for job in run_dir.glob("trial_0/level_02/*"):
        weights, masks = load_tensors(job / "weights_final.safetensors"), load_tensors(job / "mask.safetensors")
        assert all(torch.all(weights[key][~masks[key]] == 0) for key in masks), job.name
        assert json.loads((job / "result.json").read_text())["start_step"] == 4, job.name  # the rewind step

    # the ticket to reuse without ticketlab: plain safetensors by parameter name, a fresh model of the same class
    capsys.readouterr()
    out = tmp_path / "ticket"
    assert main(["--task-module", str(path), "export", str(run_dir), "--level", "2", "--format", "ticket",
                 "--output", str(out)]) == 0, capsys.readouterr().err
    mask, init, final = (load_file(str(out / f"{part}.safetensors")) for part in ("mask", "init", "final"))
    ticket = json.loads((out / "ticket.json").read_text())
    job = run_dir / "trial_0" / "level_02" / "iterative_reset"
    fresh = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    fresh.load_state_dict(final)
    trained = load_tensors(job / "weights_final.safetensors")
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, trained[key] * mask[key] if key in mask else trained[key]), key
    rewound = load_tensors(run_dir / "trial_0" / "level_00" / "dense" / "weights_rewind.safetensors")
    assert set(mask) == {"0.weight", "2.weight"} and all(torch.equal(init[key], rewound[key] * mask[key])
                                                         for key in mask)
    kept = sum(int(value.sum()) for value in mask.values())
    assert ticket["sparsity"]["remaining"] == kept and ticket["sparsity"]["total"] == 4 * 16 + 16 * 1
    assert (ticket["task"], ticket["variant"], ticket["level"], ticket["trial"], ticket["rewind_step"]) == (
        name, "iterative_reset", 2, 0, 4)
    assert ticket["source"]["config_hash"] == config.hash() and ticket["ticketlab_version"]

    # an --output that is a file or a directory of other files is one line; nothing is written or replaced
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    for output, message in ((out / "ticket.json", "is a file; the ticket format writes a directory"),
                            (tmp_path / "notes", "holds other files (keep.txt)")):
        capsys.readouterr()
        assert main(["--task-module", str(path), "export", str(run_dir), "--level", "2", "--format", "ticket",
                     "--output", str(output)]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, error
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine" and json.loads((out / "ticket.json").read_text())


@pytest.mark.slow
def test_stability_and_the_report_run_on_a_task_file(task_file, tmp_path, capsys):
    name, path = task_file
    root = tmp_path / "runs"
    assert main(["--task-module", str(path), "find", "--task", name, "--model.name", name, "--data.name", "line",
                 *SETTINGS, "--variants", "iterative_reset", "--trials", "1", "--quiet", "--no-report",
                 "--workers", "1", "--root", str(root)]) == 0, capsys.readouterr().err
    [run_dir] = root.iterdir()
    assert main(["--task-module", str(path), "stability", str(run_dir), "--rewind", "0it,4it", "--level", "2",
                 "--quiet"]) == 0, capsys.readouterr().err
    table = capsys.readouterr().out.splitlines()
    stability = _rows(run_dir / "analysis" / "stability" / "stability.csv")
    barrier = float(stability[0]["test_barrier"])
    assert any(line.endswith(f"{barrier:>12.4g}") for line in table), table  # in MSE, not a percent
    assert {(row["rewind_step"], row["level"]) for row in stability} == {(k, level) for k in "04" for level in "02"}
    assert main(["report", str(run_dir)]) == 0, capsys.readouterr().err  # the report needs no task import
    summary = (run_dir / "report" / "summary.md").read_text()
    assert "test MSE" in summary


@pytest.mark.parametrize("source,message", [
    ("missing_task.py", r"--task-module '.*missing_task.py': no such file"),
    ("no_such_task_module_xyz", r"--task-module 'no_such_task_module_xyz': no module named 'no_such_task_module_xyz'"),
    ("broken", r"--task-module '.*broken_task.py' failed to import: ZeroDivisionError: division by zero"),
    ("empty", r"--task-module '.*empty_task.py' registers no task"),
])
def test_a_bad_task_module_is_one_line(tmp_path, capsys, source, message):
    if source in ("broken", "empty"):
        path = tmp_path / f"{source}_task.py"
        path.write_text("1 / 0\n" if source == "broken" else "X = 1\n")
        source = str(path)
    elif source.endswith(".py"):
        source = str(tmp_path / source)
    try:
        assert main(["--task-module", source, "find", "--quiet", "--root", str(tmp_path / "runs")]) == 2
    finally:
        sys.modules.pop("empty_task", None)
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error, error
    import re

    assert re.match(f"ticketlab: error: {message}", error), error
    assert not (tmp_path / "runs").exists()


def test_task_module_after_the_command_says_where_it_goes(tmp_path, capsys):
    assert main(["find", "--task-module", "x.py", "--root", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--task-module goes before the command: ticketlab --task-module FILE" in error


def test_simple_task_refuses_bad_definitions():
    from ticketlab.errors import ConfigError
    from ticketlab.tasks.simple import simple_task

    common = dict(model=lambda: nn.Linear(1, 1), data=lambda: {}, loss=lambda model, batch: 0,
                  evaluate=lambda model, split: {})
    with pytest.raises(ConfigError, match=r"^direction 'up' of task 'bad' is unknown; allowed: max, min$"):
        simple_task("bad", **common, metric="mse", direction="up")
    with pytest.raises(ConfigError, match=r"^metric 'mse' is built in as lower is better; give direction min"):
        simple_task("bad", **common, metric="mse", direction="max")
    assert "bad" not in TASKS


@pytest.mark.slow
def test_worker_processes_import_the_task_file_again(task_file, tmp_path):
    """`--workers 2` through the installed command: each spawned worker imports the file (WorkerSpec.task_modules)
    and the results equal the in-process run's."""
    import os
    import subprocess

    name, path = task_file
    results = []
    for workers in ("2", "1"):
        root = tmp_path / f"workers{workers}"
        done = subprocess.run(
            [sys.executable, "-m", "ticketlab", "--task-module", str(path), "find", "--task", name, "--model.name",
             name, "--data.name", "line", *SETTINGS, "--variants", "iterative_reset,random_pruning", "--trials", "2",
             "--quiet", "--no-report", "--workers", workers, "--root", str(root)],
            capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert done.returncode == 0, done.stderr
        [run_dir] = root.iterdir()
        results.append(_rows(run_dir / "results.csv"))
    assert results[0] == results[1] and len(results[0]) == 2 * 2 * 3


def test_a_killed_job_of_a_user_task_resumes_bit_for_bit(task_file, tmp_path):
    """The engine's checkpoint holds the user task's early-stop record; data order is a function of (seed, step)."""
    from ticketlab.training.bookkeeping import TrainingInterrupted

    name, _ = task_file
    import_task_module(str(task_file[1]))
    user = sys.modules[name].TASK
    config = user.config(**{"train.optimizer": "adam", "train.batch_size": 16, "train.steps": "24it",
                            "train.eval_every": "4it"})
    data = user.task.load_data(config.data)
    masks = {"0.weight": (torch.arange(64).reshape(16, 4) % 3 != 0).float()}

    def fresh():
        return user.task.initialize(user.task.build_model(config, data), config, 7)

    whole = fresh()
    expected = user.task.train(whole, data, config.train, masks=masks, data_seed=5).to_dict()
    killed = fresh()
    with pytest.raises(TrainingInterrupted):
        user.task.train(killed, data, config.train, masks=masks, data_seed=5, job_dir=tmp_path,
                        checkpoint_interval_s=0.0, stop_after_step=10)
    from ticketlab.training.checkpoint import read_checkpoint_parts

    _, metadata = read_checkpoint_parts(tmp_path / "checkpoint.safetensors", "cpu", ("early_stop",))
    assert metadata["step"] == 8  # the last evaluation before the kill: the resume starts there
    resumed = fresh()
    result = user.task.train(resumed, data, config.train, masks=masks, data_seed=5, job_dir=tmp_path,
                             checkpoint_interval_s=0.0).to_dict()
    assert result == expected
    assert all(torch.equal(value, whole.state_dict()[key]) for key, value in resumed.state_dict().items())
    assert torch.all(resumed[0].weight[masks["0.weight"] == 0] == 0)
