"""Ticket transfer: starting tensors and masks against the source's files, controls, resume, CLI (offline: a small
generated Fashion-MNIST in the real IDX layout)."""

import dataclasses
import functools

import numpy as np
import pytest
import torch

import ticketlab
from ticketlab.cli import main
from ticketlab.config import ExperimentConfig
from ticketlab.data.idx import write_idx
from ticketlab.data.mnist import FILE_NAME_BY_KEY
from ticketlab.errors import ConfigError
from ticketlab.lottery import transfer as transfer_module
from ticketlab.lottery.integrity import verify_run
from ticketlab.api import transfer_tickets
from ticketlab.lottery.transfer import target_config_for
from ticketlab.lottery.transfer_results import read_transfer_csv, transfer_matrix
from ticketlab.models import build_model, initialize
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors
from ticketlab.tasks.classification import TASK
from ticketlab.training.loop import TrainingInterrupted, train_model

OUTPUT = "layers.3.weight"  # mlp hidden (16,): layers.1 (784 -> 16), layers.3 (16 -> classes)


pytestmark = pytest.mark.usefixtures("one_thread_for_module")


def fake_fashion(directory, seed=0):
    """Learnable 28x28 'clothes': a fixed template per class plus noise, as uint8 IDX files."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 28, 28))

    def images(count):
        labels = rng.integers(0, 10, count)
        noisy = templates[labels] + rng.normal(0, 60, (count, 28, 28))
        return np.clip(noisy, 0, 255).astype(np.uint8), labels.astype(np.uint8)

    (train_images, train_labels), (test_images, test_labels) = images(500), images(200)
    arrays = {"train_images": train_images, "train_labels": train_labels, "test_images": test_images,
              "test_labels": test_labels}
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in FILE_NAME_BY_KEY.items():
        write_idx(directory / name, arrays[key])
    return directory


def source_config(data_dir) -> ExperimentConfig:
    return ExperimentConfig(trials=1, variants=("iterative_reset",), seed=3).replace(**{
        "model.name": "mlp", "model.hidden": [16], "data.name": "fashion_mnist", "data.data_dir": str(data_dir),
        "data.validation_size": 100, "data.classes": "0-4", "train.steps": "30it", "train.eval_every": "10it",
        "train.batch_size": 20, "prune.levels": 2, "prune.rate": 0.5, "prune.output_rate": 0.5})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    data_dir = fake_fashion(root / "data")
    config = source_config(data_dir)
    result = ticketlab.find_tickets(config, root=root / "runs", progress=False, report=False, population=1)
    return result.run_dir, config, root


@pytest.fixture(scope="module")
def transferred(source):
    run_dir, config, root = source
    target = target_config_for(config, **{"data.classes": "5-7"})  # 3 classes: the output layer changes shape
    return transfer_tickets([run_dir], target, progress=False, population=1), target


def job_dir(result, run_dir, level, variant):
    return result.transfer_dir / run_dir.name / "trial_0" / f"level_{level:02d}" / variant


def test_every_tensor_but_the_output_layer_is_the_sources_masked_start(source, transferred):
    run_dir, config, _ = source
    result, target = transferred
    for level in (0, 1, 2):
        ticket = run_dir / "trial_0" / (f"level_{level:02d}/iterative_reset" if level else "level_00/dense")
        source_start = load_tensors(ticket / "weights_init.safetensors")
        start = load_tensors(job_dir(result, run_dir, level, "transferred") / "weights_init.safetensors")
        assert set(start) == set(source_start)
        for name in ("layers.1.weight", "layers.1.bias"):
            assert torch.equal(start[name], source_start[name]), (level, name)
        # the output layer: sized for 3 classes, the target's fresh draw (independently rebuilt here)
        fresh = initialize(build_model("mlp", (28, 28), 3, hidden=(16,)), "glorot_normal",
                           derive_seed(target.seed, 0, "transfer_output", level))
        assert start[OUTPUT].shape == (3, 16) and source_start[OUTPUT].shape == (5, 16)
        assert torch.equal(start[OUTPUT], fresh.state_dict()[OUTPUT])
        assert torch.equal(start["layers.3.bias"], fresh.state_dict()["layers.3.bias"])


def test_masks_are_the_sources_and_the_output_layer_is_dense(source, transferred):
    run_dir, _, _ = source
    result, _ = transferred
    for level in (1, 2):
        source_mask = load_tensors(run_dir / "trial_0" / f"level_{level:02d}/iterative_reset/mask.safetensors")
        mask = load_tensors(job_dir(result, run_dir, level, "transferred") / "mask.safetensors")
        assert torch.equal(mask["layers.1.weight"], source_mask["layers.1.weight"])
        assert bool(mask[OUTPUT].all())
        assert source_mask["layers.1.weight"].float().mean().item() == pytest.approx(0.5 ** level, abs=1e-3)
        # the random ticket: the same per-layer counts, another mask, a fresh start
        random_mask = load_tensors(job_dir(result, run_dir, level, "random_ticket") / "mask.safetensors")
        for name in mask:
            assert int(random_mask[name].sum()) == int(mask[name].sum())
        assert not torch.equal(random_mask["layers.1.weight"], mask["layers.1.weight"])
        random_start = load_tensors(job_dir(result, run_dir, level, "random_ticket") / "weights_init.safetensors")
        fresh = initialize(build_model("mlp", (28, 28), 3, hidden=(16,)), "glorot_normal",
                           derive_seed(3, 0, "random_ticket", level)).state_dict()
        assert torch.equal(random_start["layers.1.weight"], fresh["layers.1.weight"] * random_mask[
            "layers.1.weight"].float())


def test_transfer_csv_holds_every_variant_and_is_plain_csv(source, transferred):
    run_dir, _, _ = source
    result, _ = transferred
    rows = read_transfer_csv(result.transfer_csv)
    variants = {(row["variant"], row["level"]) for row in rows}
    assert variants == {("transferred", 0), ("transferred", 1), ("transferred", 2), ("random_ticket", 1),
                        ("random_ticket", 2), ("dense", 0), ("target_found", 1), ("target_found", 2)}
    header = result.transfer_csv.read_text().splitlines()[0].split(",")
    assert header[:5] == ["source", "source_data", "source_optimizer", "target", "optimizer"]
    assert {row["target"] for row in rows} == {"fashion_mnist 5-7 adam"}
    by_variant = {(row["variant"], row["level"]): row for row in rows}
    # the target's own run is an ordinary find run, reused: its results.csv agrees with transfer.csv
    own = ticketlab.report.read_results(result.target_run / "results.csv")
    level_two = [row for row in own if row["level"] == 2][0]
    assert by_variant[("target_found", 2)]["early_stop_test_accuracy"] == level_two["early_stop_test_accuracy"]
    assert all(path.is_file() for path in result.figure_files)
    assert verify_run(result.transfer_dir / run_dir.name) == []


def test_rerunning_trains_nothing(source, transferred, monkeypatch):
    run_dir, _, _ = source
    result, target = transferred

    def refuse(*args, **kwargs):
        raise AssertionError("trained a job on a finished transfer")

    monkeypatch.setattr(transfer_module, "load_task", lambda name: dataclasses.replace(TASK, train=refuse))
    monkeypatch.setattr(ticketlab.lottery.planner, "run_job", refuse)  # the target's own run: nothing to train
    monkeypatch.setattr(ticketlab.lottery.planner, "run_jobs_population", refuse)
    again = transfer_tickets([run_dir], target, progress=False, population=1)
    assert again.rows == result.rows


def test_a_killed_transfer_resumes_exactly(source, tmp_path, monkeypatch, one_thread):
    run_dir, config, _ = source
    target = target_config_for(config, **{"data.classes": "5-7", "train.optimizer": "sgd", "train.lr": 0.05,
                                          "train.momentum": 0.9})
    clean = transfer_tickets([run_dir], target, root=tmp_path / "clean", progress=False, population=1,
                             report=False)
    killed = dataclasses.replace(TASK, train=functools.partial(train_model, stop_after_step=20))
    monkeypatch.setattr(transfer_module, "load_task", lambda name: killed)
    with pytest.raises(TrainingInterrupted):
        transfer_tickets([run_dir], target, root=tmp_path / "killed", progress=False, population=1, report=False,
                         checkpoint_interval_s=0)
    first = next((tmp_path / "killed").glob("transfer_*/*/trial_0/level_00/transferred"))
    assert (first / "checkpoint.safetensors").is_file() and not (first / "result.json").exists()
    monkeypatch.undo()
    resumed = transfer_tickets([run_dir], target, root=tmp_path / "killed", progress=False, population=1,
                               report=False)

    def numbers(rows):
        return [{key: value for key, value in row.items() if key != "source"} for row in rows]

    assert numbers(resumed.rows) == numbers(clean.rows)
    for path in clean.transfer_dir.glob("*/trial_0/level_*/*/weights_final.safetensors"):
        other = resumed.transfer_dir / path.relative_to(clean.transfer_dir)
        for name, value in load_tensors(path).items():
            assert torch.equal(value, load_tensors(other)[name]), (path, name)


def test_masked_output_layer_keeps_the_sources_output_fraction(source, tmp_path):
    run_dir, config, _ = source
    target = target_config_for(config, **{"data.classes": "5-9"})
    result = transfer_tickets([run_dir], target, root=tmp_path, levels=[2], output_layer="masked", progress=False,
                              population=1, report=False)
    source_mask = load_tensors(run_dir / "trial_0/level_02/iterative_reset/mask.safetensors")
    mask = load_tensors(job_dir(result, run_dir, 2, "transferred") / "mask.safetensors")
    assert int(mask[OUTPUT].sum()) == int(source_mask[OUTPUT].sum()) == round(0.25 * 80)
    assert torch.equal(mask["layers.1.weight"], source_mask["layers.1.weight"])
    assert result.transfer_dir.name != transfer_module.transfer_directory(target, tmp_path, "dense").name


def test_refusals_are_one_line_config_errors(source, tmp_path):
    run_dir, config, _ = source
    with pytest.raises(ConfigError, match="model.hidden"):
        transfer_tickets([run_dir], config.replace(**{"model.hidden": [8]}), root=tmp_path)
    with pytest.raises(ConfigError, match="no finished ticket at trial 0 level 5"):
        transfer_tickets([run_dir], config, levels=[5], root=tmp_path)
    with pytest.raises(ConfigError, match=r"tensor layers.1.weight is \[16, 784\] in the source but \[16, 196\]"):
        transfer_tickets([run_dir], config.replace(**{"data.image_size": 14}), root=tmp_path)
    with pytest.raises(ConfigError, match="trials 2 is more than the source run's 1"):
        transfer_tickets([run_dir], config.replace(trials=2), root=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_cli_transfer_and_matrix(source, transferred, tmp_path, capsys):
    run_dir, _, root = source
    result, _ = transferred
    code = main(["transfer", str(run_dir), "--data.classes", "5-7", "--quiet", "--population", "1"])
    output = capsys.readouterr().out
    assert code == 0 and f"transfer: {result.transfer_dir}" in output
    assert "tickets of fashion_mnist 0-4 adam" in output and "transferred   random      own" in output
    assert main(["transfer", str(run_dir), "--data.image_size", "14", "--quiet", "--root", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ticketlab: error: cannot transfer fashion_mnist tickets to fashion_mnist: tensor "
                            "layers.1.weight is [16, 784] in the source but [16, 196]") and "\n" not in error
    assert main(["transfer", str(run_dir), "--levels", "1,x"]) == 2
    assert "--levels item 'x'" in capsys.readouterr().err
    assert main(["transfer-matrix", str(result.transfer_dir), "--at", "30", "--out", str(tmp_path / "m")]) == 0
    matrix_csv = (tmp_path / "m" / "matrix.csv").read_text().splitlines()
    assert matrix_csv[0] == "source \\ target,fashion_mnist 5-7 adam"
    assert {line.split(",")[0] for line in matrix_csv[1:]} == {"fashion_mnist 0-4 adam", "fashion_mnist 5-7 adam"}
    assert (tmp_path / "m" / "matrix.png").is_file()


def test_matrix_picks_the_level_nearest_the_percent():
    rows = [{"variant": "transferred", "source_data": "a", "target": "b", "level": level, "trial": trial,
             "weights_remaining_percent": percent, "early_stop_test_accuracy": accuracy + trial / 100}
            for level, percent, accuracy in ((1, 50.0, 0.9), (2, 20.0, 0.8), (3, 8.0, 0.7)) for trial in (0, 1)]
    cell = transfer_matrix(rows, 10)["cells"][("a", "b")]
    assert cell["level"] == 3 and cell["value"] == pytest.approx(0.705) and cell["trials"] == 2
    assert transfer_matrix(rows, 14)["cells"][("a", "b")]["level"] == 2  # log scale: 14 is nearer 20 than 8


def test_executable_refuses_a_missing_source_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    installed = Path(sys.executable).parent / "ticketlab"
    command = [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab.cli"]
    done = subprocess.run([*command, "transfer", str(tmp_path / "nope"), "--data.classes", "5-9"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"ticketlab: error: source run {str(tmp_path / 'nope')!r} is not a run directory " \
                                  "(no config.json)"


def test_a_damaged_transfer_job_is_set_aside_and_recomputed(source, tmp_path, capsys):
    run_dir, config, _ = source
    target = target_config_for(config, **{"data.classes": "5-7"})
    first = transfer_tickets([run_dir], target, root=tmp_path, levels=[1], progress=False, population=1,
                             report=False)
    weights = job_dir(first, run_dir, 1, "transferred") / "weights_final.safetensors"
    clean = weights.read_bytes()
    damaged = bytearray(clean)
    damaged[-3] ^= 0x40
    weights.write_bytes(bytes(damaged))
    assert verify_run(first.transfer_dir / run_dir.name)
    again = transfer_tickets([run_dir], target, root=tmp_path, levels=[1], progress=False, population=1,
                             report=False)
    assert "trial 0 level 1 transferred is damaged" in capsys.readouterr().err
    assert weights.read_bytes() == clean and again.rows == first.rows
    assert verify_run(first.transfer_dir / run_dir.name) == []


@pytest.mark.parametrize("levels", ["1,1", "0,2,02"])
def test_cli_transfer_refuses_a_repeated_level(tmp_path, capsys, levels):
    assert main(["transfer", str(tmp_path / "source"), "--levels", levels, "--root", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--levels {levels!r} lists level" in err[0] and "more than once" in err[0], err
    assert not (tmp_path / "t").exists()
