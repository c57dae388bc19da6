"""Property test over damaged run directories: for random damage (truncation, a flipped bit, garbage, deletion,
bytes that are not UTF-8) to a random file of a copy of one finished tiny run, every read-only command (report,
verify, cost, export in every format that needs no extra, masks) either succeeds with the clean run's numbers or
refuses in one line (exit 2; verify exits 1), and no command changes a file of the run."""

import hashlib
import shutil
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.api import find_tickets

EXPORT_FORMATS = ("prune", "dense", "compact", "sparse")
DAMAGE = ("truncate", "flip", "garbage", "delete", "not_utf8")
# Files no check covers: damage there changes nothing any command reads, and `verify` may call the run clean.
UNCHECKED = {".lock", "layer_sparsity.csv", "population.json", "mask_cost.json"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data_for_module):
    """(run directory, {command: (exit status, normalized output)}) of one finished tiny run (MLP, 2 levels)."""
    from ticketlab.tasks import classification

    patch = pytest.MonkeyPatch()
    patch.setattr(classification, "load_dataset", lambda data_config: tiny_data_for_module)  # as export loads it
    _without_figures(patch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(8,)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="10it", eval_every="5it"),
        prune=PruneConfig(rate=0.5, output_rate=0.25, levels=2), variants=("iterative_reset",), trials=1)
    run_dir = find_tickets(config, root=tmp_path_factory.mktemp("clean"), progress=False, report=False,
                           population=1).run_dir
    outputs = _outputs(run_dir, tmp_path_factory.mktemp("clean_out"))
    assert all(code == 0 for code, _ in outputs.values()), outputs
    for name in ("report", "report.html", "cost_layers.csv", "cost.csv", "analysis"):  # the commands' own outputs
        target = run_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    yield run_dir, outputs
    torch.set_num_threads(threads)
    patch.undo()


def _without_figures(patch: pytest.MonkeyPatch) -> None:
    """Figures are drawn from the numbers compared here, and drawing them takes most of a command's time."""
    from ticketlab.analysis import figures as mask_figures
    from ticketlab.report import report

    patch.setattr(report, "draw_lottery_figure", lambda summary, stem, title=None: (Path(f"{stem}.png"),
                                                                                     Path(f"{stem}.svg")))
    patch.setattr(report, "draw_learning_curves", lambda *args, **kwargs: None)
    for name in ("draw_mask_overlap", "draw_layer_remaining"):
        patch.setattr(mask_figures, name, lambda rows, path, title=None: Path(path))


def _outputs(run_dir: Path, out: Path) -> dict[str, tuple[int, object]]:
    """Each read-only command's exit status and what it produced (numbers, with the run's path taken out)."""
    results = {}

    def run(name, argv, produced):
        code = main(argv)
        results[name] = (code, produced() if code == 0 else None)

    run("report", ["report", str(run_dir)], lambda: (run_dir / "report" / "summary.md").read_text())
    run("cost", ["cost", str(run_dir)],
        lambda: [(run_dir / name).read_text() for name in ("cost.csv", "cost_layers.csv")])
    run("masks", ["masks", str(run_dir)], lambda: [(run_dir / "analysis" / "masks" / name).read_text()
                                                    for name in ("mask_overlap.csv", "layer_remaining.csv")])
    for fmt in EXPORT_FORMATS:
        path = out / f"ticket.{fmt}"
        run(f"export {fmt}", ["export", str(run_dir), "--level", "2", "--format", fmt, "--output", str(path)],
            lambda path=path: _tensors(path))
    results["verify"] = (main(["verify", str(run_dir)]), None)
    return results


def _tensors(path: Path) -> dict:
    import safetensors.torch

    return {name: value.tolist() for name, value in safetensors.torch.load_file(path).items()}


def _hashes(run_dir: Path) -> dict[str, str]:
    return {path.relative_to(run_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(run_dir.rglob("*")) if path.is_file()}


def _damage(path: Path, kind: str, where: int, garbage: bytes, bit: int) -> None:
    payload = path.read_bytes()
    index = where % max(len(payload), 1)
    if kind == "delete":
        path.unlink()
    elif kind == "truncate":
        path.write_bytes(payload[:index])
    elif kind == "flip":
        path.write_bytes(payload[:index] + bytes([payload[index] ^ (1 << bit)]) + payload[index + 1:])
    elif kind == "garbage":
        path.write_bytes(garbage)
    else:  # a byte that never occurs in UTF-8
        path.write_bytes(payload[:index] + b"\xff" + payload[index + 1:])


DAMAGES = dict(choice=st.integers(min_value=0, max_value=10_000), kind=st.sampled_from(DAMAGE),
               where=st.integers(min_value=0, max_value=1 << 20), garbage=st.binary(min_size=1, max_size=64),
               bit=st.integers(min_value=0, max_value=7))


def _examples(count: int):
    return settings(max_examples=count, derandomize=True, deadline=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _each_damage_once(test):
    """Every kind of damage at least once, each to another file, besides the drawn ones."""
    for number, kind in enumerate(DAMAGE):
        test = example(choice=7 * number + 3, kind=kind, where=101 * number + 40, garbage=b"{]", bit=number)(test)
    return test


@_examples(12)  # ~1.5 s each on a quiet 2-core machine, with the 5 explicit ones; the slow twin draws 150
@_each_damage_once
@given(**DAMAGES)
def test_every_read_only_command_is_right_or_refuses_in_one_line(finished, tmp_path_factory, capsys, choice, kind,
                                                                 where, garbage, bit):
    _check_damage(finished, tmp_path_factory, capsys, choice, kind, where, garbage, bit)


@pytest.mark.slow
@_examples(150)
@given(**DAMAGES)
def test_every_read_only_command_is_right_or_refuses_in_one_line_over_150_damages(
        finished, tmp_path_factory, capsys, choice, kind, where, garbage, bit):
    _check_damage(finished, tmp_path_factory, capsys, choice, kind, where, garbage, bit)


def _check_damage(finished, tmp_path_factory, capsys, choice, kind, where, garbage, bit):
    clean_dir, clean = finished
    files = sorted(path.relative_to(clean_dir) for path in clean_dir.rglob("*") if path.is_file())
    name = files[choice % len(files)]
    assume(kind in ("delete", "garbage") or (clean_dir / name).stat().st_size > 0)
    run_dir = tmp_path_factory.mktemp("damaged") / clean_dir.name
    shutil.copytree(clean_dir, run_dir)
    before = (run_dir / name).read_bytes()
    _damage(run_dir / name, kind, where, garbage, bit)
    damaged = not (run_dir / name).exists() or (run_dir / name).read_bytes() != before
    hashes = _hashes(run_dir)
    capsys.readouterr()

    outputs = _outputs(run_dir, tmp_path_factory.mktemp("out"))
    errors = capsys.readouterr().err.splitlines()

    assert _hashes(run_dir).items() >= hashes.items(), "a command changed a file of the run"
    refusals = [line for line in errors if line.startswith("ticketlab: error: ")]
    assert len(refusals) == sum(code == 2 for code, _ in outputs.values()), errors
    # a job without its result.json reads as unfinished (killed, or set aside): `find` recomputes it, `cost`
    # leaves it out, `verify` sees nothing wrong; nor in a run without results.csv (`find` writes it last)
    unfinished = kind == "delete" and name.name in ("result.json", "results.csv")
    for command, (code, produced) in outputs.items():
        if command == "verify":
            assert code in (0, 1) and (code == 1 or not damaged or unfinished or name.name in UNCHECKED), (name, kind)
            continue
        assert code in (0, 2), (command, name, kind)
        if code == 0 and command == "cost" and unfinished:  # the other jobs' rows, as in the clean run
            for text, clean_text in zip(produced, clean[command][1]):
                lines = text.splitlines()
                assert lines[0] == clean_text.splitlines()[0] and set(lines) <= set(clean_text.splitlines())
        elif code == 0:
            assert produced == clean[command][1], f"{command} gave other numbers after {kind} of {name}"
    if not damaged:
        assert all(code == 0 for code, _ in outputs.values())


def test_the_property_holds_through_the_installed_executable(finished, tmp_path):
    """One damage through the `ticketlab` executable: a non-UTF-8 config.json is one line, exit 2 (verify: 1)."""
    import subprocess

    clean_dir, _ = finished
    run_dir = tmp_path / clean_dir.name
    shutil.copytree(clean_dir, run_dir)
    (run_dir / "config.json").write_bytes(b"\xff\xfe" + (run_dir / "config.json").read_bytes())
    installed = Path(sys.executable).parent / "ticketlab"
    command = [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab"]
    for argv, expected in ((["cost", str(run_dir)], 2), (["verify", str(run_dir)], 1)):
        done = subprocess.run([*command, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == expected and "Traceback" not in done.stderr, done.stderr
        if expected == 2:
            assert done.stderr.count("\n") == 1 and "config.json" in done.stderr
