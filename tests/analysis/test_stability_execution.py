"""`stability`'s execution flags (--workers, --population, --checkpoint-every, --executor): they change how the
copies train, never their numbers; a killed analysis resumes; bad values are one line and exit 2."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from ticketlab.cli import main

FIND = ["find", "--trials", "1", "--levels", "1", "--steps", "20it", "--train.eval_every", "10it",
        "--model.hidden", "16,16", "--data.train_size", "600", "--data.validation_size", "100",
        "--variants", "iterative_reset", "--quiet", "--no-report", "--workers", "1"]
STABILITY = ["--rewind", "0it,5it", "--points", "3", "--device", "cpu", "--quiet"]
OUTPUTS = ("stability.csv", "interpolation.csv")


@pytest.fixture(scope="module")
def built_in_run(tmp_path_factory) -> Path:
    """A finished built-in run (MNIST-1D MLP, whose 16-wide layers stack bitwise), its copies not yet trained."""
    root = tmp_path_factory.mktemp("runs")
    assert main([*FIND, "--root", str(root)]) == 0
    (run_dir,) = root.glob("*/")
    return run_dir


def analysed_copy(run_dir: Path, tmp_path: Path, name: str, extra: list[str], capsys) -> Path:
    """The stability outputs of a fresh copy of `run_dir` analysed with `extra` flags."""
    target = tmp_path / name / run_dir.name
    shutil.copytree(run_dir, target)
    assert main(["stability", str(target), *STABILITY, *extra]) == 0
    assert "copies trained now: 8" in capsys.readouterr().out
    return target / "analysis" / "stability"


def test_populations_give_the_plain_runs_bytes(built_in_run, tmp_path, capsys):
    plain = analysed_copy(built_in_run, tmp_path, "plain", [], capsys)
    out = analysed_copy(built_in_run, tmp_path, "population", ["--population", "4", "--checkpoint-every", "0"], capsys)
    for file in OUTPUTS:
        assert (out / file).read_bytes() == (plain / file).read_bytes(), file
    results = [path.read_text() for path in (out / "copies").rglob("result.json")]
    assert len(results) == 8 and all('"population_size": 4' in text for text in results)  # really stacked


@pytest.mark.slow  # each worker process imports torch and makes MNIST-1D again (~25 s of a loaded 2-core machine)
def test_worker_processes_give_the_plain_runs_bytes(built_in_run, tmp_path, capsys):
    plain = analysed_copy(built_in_run, tmp_path, "plain", [], capsys)
    for name, extra in (("workers", ["--workers", "2"]), ("both", ["--workers", "2", "--population", "3"])):
        out = analysed_copy(built_in_run, tmp_path, name, extra, capsys)
        for file in OUTPUTS:
            assert (out / file).read_bytes() == (plain / file).read_bytes(), (name, file)


@pytest.mark.slow
def test_a_killed_analysis_resumes_to_the_same_bytes(built_in_run, tmp_path, capsys):
    plain = analysed_copy(built_in_run, tmp_path, "plain", [], capsys)
    target = tmp_path / "killed" / built_in_run.name
    shutil.copytree(built_in_run, target)
    command = [sys.executable, "-m", "ticketlab", "stability", str(target), *STABILITY, "--checkpoint-every", "0",
               "--workers", "2", "--population", "2"]
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    copies = target / "analysis" / "stability" / "copies"
    deadline = time.time() + 120
    while time.time() < deadline and killed.poll() is None and not list(copies.rglob("checkpoint.safetensors")):
        time.sleep(0.01)
    assert killed.poll() is None, "the analysis finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert main(["stability", str(target), *STABILITY, "--workers", "2", "--population", "2"]) == 0
    capsys.readouterr()
    for file in OUTPUTS:
        assert (copies.parent / file).read_bytes() == (plain / file).read_bytes(), file


@pytest.mark.parametrize("extra, message", [
    (["--workers", "0"], "--workers 0 must be between 1 and 256"),
    (["--population", "-1"], "--population -1 must be between 1 and 100,000"),
    (["--checkpoint-every", "nan"], "--checkpoint-every nan must be a finite number of seconds >= 0"),
    (["--executor", "ray"], "--executor 'ray' is not allowed for stability; allowed: local; "
                            "ray runs find, sweep and transfer, not stability"),
])
def test_bad_execution_flags_are_one_line(tmp_path, capsys, extra, message):
    assert main(["stability", str(tmp_path), *extra]) == 2
    assert capsys.readouterr().err.splitlines() == [f"ticketlab: error: {message}"]
    script = Path(sysconfig.get_path("scripts")) / "ticketlab"
    executable = [str(script)] if script.exists() else [sys.executable, "-m", "ticketlab"]
    done = subprocess.run([*executable, "stability", str(tmp_path), *extra], capture_output=True, text=True,
                          env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert (done.returncode, done.stderr.splitlines()) == (2, [f"ticketlab: error: {message}"])


def test_the_python_api_checks_the_execution_values(tmp_path):
    from ticketlab.analysis.stability import stability_analysis
    from ticketlab.errors import ConfigError

    with pytest.raises(ConfigError, match="workers 0 must be"):
        stability_analysis(tmp_path, workers=0)
    with pytest.raises(ConfigError, match="checkpoint interval -1"):
        stability_analysis(tmp_path, checkpoint_interval_s=-1)
    with pytest.raises(ConfigError, match="cannot take a custom model"):
        stability_analysis(tmp_path, workers=2, model=object())


def test_both_copies_of_a_pair_start_from_the_rewound_optimizer_state(tiny_run):
    """The optimizer steps its state in place; the second copy must not start from the first copy's final state
    (it did: with one data order the two copies then differed)."""
    import torch

    from ticketlab.analysis.copies import data_order_stability
    from ticketlab.config import TrainConfig
    from ticketlab.training.optim import optimizer_tensors

    model = tiny_run.model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 0.5)
    optimizer.step()
    state = optimizer_tensors(optimizer)
    before = {name: value.clone() for name, value in state.items()}
    config = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=20, steps="15it", eval_every="15it")
    pair = data_order_stability(model, tiny_run.data, config, data_seeds=(4, 4), start_step=5, optimizer_state=state,
                                points=3)
    assert (pair.distance.l2, pair.distance.relative) == (0.0, 0.0)
    assert state.keys() == before.keys() and all(torch.equal(state[name], before[name]) for name in state)
