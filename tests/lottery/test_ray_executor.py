"""The Ray executor on a local two-CPU Ray cluster: the same results.csv as the local planner, a killed worker's
task retried with nothing lost, and one-line errors (Ray missing, a run directory the workers cannot see)."""

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.api import find_tickets
from ticketlab.lottery.executors.ray import (
    TASK_NAME,
    RayExecutorError,
    check_ray_address,
    check_shared_run_dir,
)

TINY_CLI = ["--trials", "1", "--levels", "1", "--steps", "100it", "--train.eval_every", "50it",
            "--data.train_size", "400", "--variants", "iterative_reset,random_pruning", "--quiet", "--no-report",
            "--population", "1"]


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray cluster (2 CPUs) for the module's tests: starting Ray takes seconds."""
    ray = pytest.importorskip("ray", reason="the Ray tests need pip install 'ticketlab[ray]' (in the test extra)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


def _config(**changes):
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(32, 16)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="60it", eval_every="20it"),
        prune=PruneConfig(rate=0.5, output_rate=0.25, levels=2),
        trials=2,
    )
    return config.replace(**changes) if changes else config


def _run(root, data, **options):
    return find_tickets(options.pop("config", _config()), root=root, data=data, progress=False, report=False,
                        **options)


@pytest.mark.parametrize("population", [1, None])
def test_ray_gives_the_local_results(tmp_path, tiny_data, ray_session, one_thread, population):
    config = _config(variants=("iterative_reset", "oneshot_reinit", "random_pruning", "finetune"))
    local = _run(tmp_path / "local", tiny_data, config=config, population=population)
    on_ray = _run(tmp_path / "ray", tiny_data, config=config, population=population, executor="ray")
    # one thread per task and the local planner's populations: bit-identical numbers
    assert on_ray.results_csv.read_text() == local.results_csv.read_text()
    assert len(on_ray.rows) == 4 * 2 * 3  # variants x trials x (dense + 2 levels)
    assert (on_ray.run_dir / "layer_sparsity.csv").read_text() == (local.run_dir / "layer_sparsity.csv").read_text()
    weights = sorted(on_ray.run_dir.glob("*/*/*/weights_final.safetensors"))
    assert len(weights) == 2 * (1 + 2 * 4)  # trials x (dense + levels x variants)
    for path in weights:
        assert path.read_bytes() == (local.run_dir / path.relative_to(on_ray.run_dir)).read_bytes(), path
    # a finished run trains nothing again
    stamps = {path: path.stat().st_mtime_ns for path in weights}
    again = _run(tmp_path / "ray", tiny_data, config=config, population=population, executor="ray")
    assert again.rows == on_ray.rows
    assert {path: path.stat().st_mtime_ns for path in weights} == stamps


def _descendants(pid: int) -> set[int]:
    """Process ids below `pid` (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_first_task(run_root, killed: list, stop: threading.Event) -> None:
    """SIGKILL the Ray worker process running a ticketlab task, once a level-1 job has written a checkpoint."""
    while not stop.is_set():
        if list(run_root.glob("*/trial_0/level_01/*/checkpoint.safetensors")):
            # this session's workers only: the local cluster's processes descend from this one; Ray titles a
            # worker with the task it runs
            for pid in _descendants(os.getpid()):
                if TASK_NAME in _cmdline(pid):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.005)


def test_a_killed_worker_is_retried_and_nothing_is_lost(tmp_path, tiny_data, ray_session, one_thread):
    config = _config(**{"train.steps": "200it", "train.eval_every": "10it", "trials": 1, "prune.levels": 1,
                        "variants": ("iterative_reset", "random_pruning")})
    local = _run(tmp_path / "local", tiny_data, config=config, population=1)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_task, args=(tmp_path / "ray", killed, stop), daemon=True)
    killer.start()
    try:
        on_ray = _run(tmp_path / "ray", tiny_data, config=config, population=1, executor="ray",
                      checkpoint_interval_s=0.0)
    finally:
        stop.set()
        killer.join()
    assert killed, "no task was running long enough to be killed"
    assert on_ray.results_csv.read_text() == local.results_csv.read_text()


def test_find_on_ray_through_the_cli(tmp_path, ray_session, one_thread, capsys):
    assert main(["find", *TINY_CLI, "--root", str(tmp_path / "local")]) == 0
    assert main(["find", *TINY_CLI, "--root", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert "results:" in capsys.readouterr().out
    local_csv = next((tmp_path / "local").glob("*/results.csv")).read_text()
    assert next((tmp_path / "ray").glob("*/results.csv")).read_text() == local_csv


def test_missing_ray_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["find", *TINY_CLI, "--root", str(tmp_path / "runs"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ticketlab[ray]'" in err
    assert not (tmp_path / "runs").exists()  # refused before anything is written
    with pytest.raises(ConfigError, match=r"pip install 'ticketlab\[ray\]'"):
        find_tickets(_config(), root=tmp_path / "api", executor="ray")


@pytest.mark.parametrize("arguments, expected", [
    (["--executor", "dask"], "invalid choice: 'dask'"),
    (["--ray-address", "auto"], "--ray-address and --ray-cpus-per-task need --executor ray"),
    (["--executor", "ray", "--ray-cpus-per-task", "0"], "--ray-cpus-per-task must be between 1 and 1024, got 0"),
])
def test_bad_executor_flags_are_one_line(tmp_path, capsys, arguments, expected):
    assert main(["find", *TINY_CLI, "--root", str(tmp_path), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_ray_flags_of_sweep_need_the_ray_executor(tmp_path, capsys):
    assert main(["sweep", "--rewinds", "0it", "--root", str(tmp_path), "--ray-address", "auto"]) == 2
    assert "--ray-address and --ray-cpus-per-task need --executor ray" in capsys.readouterr().err


def test_unknown_executor_in_the_api(tmp_path):
    with pytest.raises(ConfigError, match="unknown executor 'dask'; allowed: local, ray"):
        find_tickets(_config(), root=tmp_path, executor="dask")


def test_a_worker_that_cannot_see_the_run_directory_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not see run directory .*mounts at the same path"):
        check_shared_run_dir(tmp_path / "elsewhere")
    (tmp_path / "config.json").write_text("{}")
    check_shared_run_dir(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json"]  # the probe is gone


def test_rewind_sweep_on_ray_gives_the_local_summary(tmp_path, tiny_data, ray_session, one_thread):
    from ticketlab.api import rewind_sweep

    config = _config(trials=1, variants=("iterative_reset",))
    options = {"data": tiny_data, "progress": False, "report": False, "population": 1}
    local = rewind_sweep(config, ["0it", "20it"], root=tmp_path / "local", **options)
    on_ray = rewind_sweep(config, ["0it", "20it"], root=tmp_path / "ray", executor="ray", **options)
    assert on_ray.summary_csv.read_text() == local.summary_csv.read_text()


def test_help_imports_neither_torch_nor_ray():
    import subprocess

    code = ("import sys; from ticketlab.cli import main; main(['find', '--help']); "
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--executor {local,ray}" in done.stdout and "--ray-address ADDRESS" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_driver_leaves_no_task_running_and_resumes(tmp_path):
    """SIGKILL `ticketlab find --executor ray` (with its own local cluster) mid-run: Ray's processes die with it,
    and the same command finishes the run with the results of an uninterrupted one (slow: two cluster starts)."""
    import subprocess

    def find(root, *extra):
        return subprocess.Popen([sys.executable, "-m", "ticketlab.cli", "find", *TINY_CLI, "--steps", "400it",
                                 "--train.eval_every", "10it", "--root", str(root), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=os.environ | {"OMP_NUM_THREADS": "1"})  # one thread, as each Ray task

    reference = find(tmp_path / "reference")
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    killed = find(tmp_path / "ray", "--executor", "ray", "--checkpoint-every", "0")
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None:
        if list((tmp_path / "ray").glob("*/trial_0/level_01/*/checkpoint.safetensors")):
            break
        time.sleep(0.01)
    assert killed.poll() is None, "the run finished before it could be killed"
    descendants = _descendants(killed.pid)
    killed.kill()
    killed.wait()
    essential = {pid for pid in descendants if any(name in _cmdline(pid) for name in (TASK_NAME, "raylet", "gcs_server"))}
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(pid) for pid in essential):
        time.sleep(0.1)
    assert not [_cmdline(pid) for pid in essential if _alive(pid)]  # no task trains on into the run directory
    for pid in descendants:  # Ray's dashboard and runtime-env agents can outlive their raylet: stop ours
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not list((tmp_path / "ray").glob("*/trial_0/level_01/random_pruning/result.json"))
    resumed = find(tmp_path / "ray", "--executor", "ray")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    reference_csv = next((tmp_path / "reference").glob("*/results.csv")).read_text()
    assert next((tmp_path / "ray").glob("*/results.csv")).read_text() == reference_csv


def _closed_port() -> int:
    """A local TCP port nobody listens on (bound once, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_address_with_nothing_listening_is_one_line_not_a_hang(tmp_path, capsys):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    assert main(["find", *TINY_CLI, "--root", str(tmp_path / "runs"), "--executor", "ray",
                 "--ray-address", address]) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ticketlab: error: ") and repr(address) in err, err
    assert not (tmp_path / "runs").exists()  # refused before anything is written
    with pytest.raises(RayExecutorError, match=re.escape(repr(address))):  # the API
        find_tickets(_config(), root=tmp_path / "api", executor="ray", ray_address=address)
    assert not (tmp_path / "api").exists()
    assert main(["sweep", "--rewinds", "0it", "--root", str(tmp_path / "sweep"), "--executor", "ray",
                 "--ray-address", address]) == 2
    assert repr(address) in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_an_unreachable_ray_address_gives_up_in_bounded_time():
    pytest.importorskip("ray")
    started = time.monotonic()
    with pytest.raises(RayExecutorError, match=r"'192\.0\.2\.1:6379'"):  # TEST-NET-1: never answers
        check_ray_address("192.0.2.1:6379", timeout_s=0.5)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("address", ["localhost", "host:port", "host:0", ":6379", "host:70000"])
def test_a_malformed_ray_address_is_one_line(address):
    with pytest.raises(ConfigError, match=r"is not an address; allowed: HOST:PORT"):
        check_ray_address(address)


def test_the_installed_command_refuses_a_dead_ray_address(tmp_path):
    pytest.importorskip("ray")
    import subprocess

    address = f"127.0.0.1:{_closed_port()}"
    done = subprocess.run([sys.executable, "-m", "ticketlab", "find", *TINY_CLI, "--root", str(tmp_path),
                           "--executor", "ray", "--ray-address", address], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and address in done.stderr, done.stderr
