"""The command line: one-line errors without tracebacks, a torch-free --help, and resume after a real kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ticketlab.cli import main

TINY = ["--trials", "1", "--levels", "2", "--steps", "400it", "--train.eval_every", "20it",
        "--data.train_size", "800", "--variants", "iterative_reset,random_pruning", "--quiet", "--no-report",
        "--workers", "1"]


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["find", "--model.name", "resnet9000"], "unknown model.name 'resnet9000'; allowed: "),
        (["find", "--data.name", "imagenet22k"], "unknown data.name 'imagenet22k'; allowed: "),
        (["find", "--target-remaining", "0"], "must be in (0, 100]"),
        (["find", "--target-remaining", "150"], "150.0 must be in (0, 100]"),
        (["find", "--train.lr", "fast"], "train.lr value 'fast' must be a number"),
        (["find", "--steps", "ten"], "invalid step 'ten'"),
        (["find", "--preset", "nope"], "unknown preset 'nope'; allowed: "),
        (["find", "--variants", "lucky"], "unknown variants 'lucky'; allowed: "),
        (["find", "--preset", "lenet_mnist", "--data.data_dir", "/no/such/dir", "--quiet"], "/no/such/dir"),
        (["report", "/no/such/run"], "/no/such/run"),
    ],
)
def test_bad_input_gives_one_clear_line(arguments, expected, capsys, tmp_path):
    code = main(arguments + ["--root", str(tmp_path)] if arguments[0] == "find" else arguments)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("ticketlab: error: ") and expected in lines[-1]
    assert "Traceback" not in captured.err


def test_config_file_with_typo_is_rejected(tmp_path, capsys):
    path = tmp_path / "experiment.toml"
    path.write_text('[train]\nlearning_rate = 0.1\n')
    assert main(["find", "--config", str(path), "--root", str(tmp_path)]) == 2
    assert "unknown config key 'train.learning_rate'" in capsys.readouterr().err


def test_corrupt_idx_file_is_a_one_line_error(tmp_path, capsys):
    from ticketlab.data.idx import write_idx
    import numpy as np

    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    write_idx(data_dir / "train-images-idx3-ubyte.gz", np.zeros((20, 28, 28), np.uint8))
    write_idx(data_dir / "train-labels-idx1-ubyte.gz", np.zeros(20, np.uint8))
    write_idx(data_dir / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    (data_dir / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    code = main(["find", "--preset", "lenet_mnist", "--data-dir", str(data_dir), "--root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "t10k-images-idx3-ubyte.gz" in err


def test_help_does_not_import_torch():
    code = "import sys; from ticketlab.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


def _find(root: Path, extra=()):
    return subprocess.Popen(
        [sys.executable, "-m", "ticketlab.cli", "find", *TINY, "--root", str(root), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize(
    "population, kill_when",
    [
        ("1", "*/trial_0/level_01/*/checkpoint.safetensors"),  # mid-training of a level-1 job
        # mid-training of the first population, and of a later one (slow: ~30 s each; the worker processes'
        # case below kills a later population too)
        pytest.param("auto", "*/trial_0/level_00/dense/checkpoint.safetensors", marks=pytest.mark.slow),
        pytest.param("auto", "*/trial_0/level_01/*/checkpoint.safetensors", marks=pytest.mark.slow),
        # populations split across 2 worker processes (ticketlab.lottery.executors.processes), killed mid-population
        ("auto-workers", "*/trial_1/level_01/*/checkpoint.safetensors"),
    ],
)
def test_resume_after_sigkill_gives_the_same_results(tmp_path, population, kill_when):
    extra = {"1": ["--population", "1"], "auto": [], "auto-workers": ["--workers", "2", "--trials", "2"]}[population]
    reference = _find(tmp_path / "reference", extra)
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    killed = _find(tmp_path / "killed", [*extra, "--checkpoint-every", "0"])
    # kill the run part-way: once level 1 is training (a checkpoint exists), before the last level is done
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None:
        if list((tmp_path / "killed").glob(kill_when)):
            break
        time.sleep(0.01)
    assert killed.poll() is None, "the run finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not list((tmp_path / "killed").glob("*/trial_0/level_02/random_pruning/result.json"))
    resumed = _find(tmp_path / "killed", extra)
    out2, err2 = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err2
    reference_csv = next((tmp_path / "reference").glob("*/results.csv")).read_text()
    resumed_csv = next((tmp_path / "killed").glob("*/results.csv")).read_text()
    assert resumed_csv == reference_csv
    assert "results:" in out2 and "iter-reset" in out2


def _children(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes die with their parent on Linux")
def test_killing_find_leaves_no_worker_training_on(tmp_path):
    killed = _find(tmp_path, ["--population", "1", "--workers", "2", "--checkpoint-every", "0"])
    deadline = time.time() + 300
    workers: set[int] = set()
    while time.time() < deadline and killed.poll() is None:
        if list(tmp_path.glob("*/trial_0/level_00/dense/checkpoint.safetensors")):
            workers = {pid for pid in _children(killed.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()}
            if workers:
                break
        time.sleep(0.01)
    assert killed.poll() is None and workers, "no worker process was seen training"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "a worker kept training after find was killed"
