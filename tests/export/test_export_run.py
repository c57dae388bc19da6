"""Exports of finished runs: every format round-trips and reproduces the masked model; the prune-convention file
loads with torch.nn.utils.prune's own functions; `ticketlab export` / `ticketlab cost` through the CLI."""

import csv
import sys

import pytest
import safetensors.torch
import torch
from torch.nn.utils import prune

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.data.splits import make_splits
from ticketlab.export import FORMATS, export_ticket, load_export, load_ticket
from ticketlab.api import find_tickets
from ticketlab.models import build_model
from ticketlab.pruning import prunable_weights
from ticketlab.pruning.channels import alive_channels, channel_groups

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
HAS_ONNX = all(__import__("importlib").util.find_spec(name) for name in ("onnx", "onnxruntime"))


def _images():
    generator = torch.Generator().manual_seed(0)
    templates = torch.rand(4, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 4, (300,), generator=generator)
    images = templates[labels] + 0.3 * torch.rand(300, 1, 8, 8, generator=generator)
    return make_splits(images[:200], labels[:200], images[200:], labels[200:], validation_size=40, num_classes=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished conv2 runs on 8x8 images (channel pruning and unstructured), data loaded through the task
    (as `ticketlab export` loads it)."""
    from ticketlab.tasks import classification

    splits = _images()
    patch = pytest.MonkeyPatch()
    patch.setattr(classification, "load_dataset", lambda data_config: splits)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    found = {}
    for unit in ("channel", "weight"):
        config = ExperimentConfig(
            model=ModelConfig(name="conv2", width=4),
            train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=40, steps="30it", eval_every="15it"),
            prune=PruneConfig(rate=0.4, output_rate=0.2, levels=2, unit=unit),
            variants=("iterative_reset", "random_pruning"), trials=1)
        found[unit] = find_tickets(config, root=root, progress=False, report=False).run_dir
    yield found, splits
    torch.set_num_threads(threads)
    patch.undo()


def _masked_outputs(ticket):
    with torch.no_grad():
        return ticket.model(ticket.examples)


@pytest.mark.parametrize("fmt", [name for name in FORMATS if not name.startswith("onnx")])
@pytest.mark.parametrize("unit", ["channel", "weight"])
def test_every_export_round_trips_and_reproduces_the_masked_model(runs, tmp_path, fmt, unit):
    ticket = load_ticket(runs[0][unit], level=2)
    result = export_ticket(ticket, fmt, tmp_path / f"ticket.{fmt}")
    assert result.bytes == (tmp_path / f"ticket.{fmt}").stat().st_size > 0
    model = load_export(tmp_path / f"ticket.{fmt}")  # rebuilt from the file's metadata alone
    with torch.no_grad():
        assert torch.allclose(model(ticket.examples), _masked_outputs(ticket), **TOLERANCE)
    assert not list(tmp_path.glob(".*partial"))


def test_channel_tickets_are_structured_and_compact_exports_are_smaller(runs, tmp_path):
    run_dir = runs[0]["channel"]
    tickets = [load_ticket(run_dir, level) for level in range(3)]
    groups = channel_groups(tickets[0].model)
    previous = None
    for ticket in tickets[1:]:
        for group in groups:
            rows = ticket.masks[f"{group.producer}.weight"].flatten(1)
            alive = alive_channels(ticket.masks, group)
            # whole channels only: every kept row has the same mask (the previous group's kept inputs)
            assert alive.any() and torch.all(rows[alive] == rows[alive][0]) and rows[~alive].sum() == 0
            assert torch.all(ticket.masks[f"{group.producer}.bias"] == alive.float())  # bias masked with it
            if previous is not None:
                assert torch.all(alive <= alive_channels(previous.masks, group))  # IMP nests
        previous = ticket
    random_ticket = load_ticket(run_dir, 2, variant="random_pruning")
    for group in groups:
        assert alive_channels(random_ticket.masks, group).sum() == alive_channels(tickets[2].masks, group).sum()
    dense = export_ticket(tickets[2], "dense", tmp_path / "d")
    compact = export_ticket(tickets[2], "compact", tmp_path / "c")
    assert compact.bytes < dense.bytes
    assert compact.cost["dense_flops"] == dense.cost["effective_flops"] < dense.cost["dense_flops"]


def test_prune_convention_loads_with_torch_nn_utils_prune(runs, tmp_path):
    ticket = load_ticket(runs[0]["weight"], level=2)
    export_ticket(ticket, "prune", tmp_path / "ticket.safetensors")
    tensors = safetensors.torch.load_file(tmp_path / "ticket.safetensors")
    model = build_model("conv2", (1, 8, 8), 4, width=4)
    modules = dict(model.named_modules())
    pruned = [name.rpartition(".")[0] for name in prunable_weights(model)]
    for name in pruned:
        prune.identity(modules[name], "weight")  # torch's own reparametrization: weight_orig + weight_mask
    model.load_state_dict(tensors)
    model.eval()
    assert all(prune.is_pruned(modules[name]) for name in pruned)
    with torch.no_grad():
        assert torch.allclose(model(ticket.examples), _masked_outputs(ticket), **TOLERANCE)
    for name in pruned:
        assert torch.equal(modules[name].weight_mask, ticket.masks[f"{name}.weight"])
        prune.remove(modules[name], "weight")
    final = dict(ticket.model.named_parameters())
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, final[name])


def test_dense_export_is_a_plain_state_dict(runs, tmp_path):
    ticket = load_ticket(runs[0]["weight"], level=1)
    export_ticket(ticket, "dense", tmp_path / "dense.safetensors")
    model = build_model("conv2", (1, 8, 8), 4, width=4)
    model.load_state_dict(safetensors.torch.load_file(tmp_path / "dense.safetensors"))
    with torch.no_grad():
        assert torch.equal(model.eval()(ticket.examples), _masked_outputs(ticket))


def test_export_and_cost_commands(runs, tmp_path, capsys):
    run_dir = str(runs[0]["channel"])
    out = tmp_path / "compact.safetensors"
    assert main(["export", run_dir, "--level", "2", "--format", "compact", "--output", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"compact: {out} (") and "outputs match the masked model" in line
    assert main(["export", run_dir, "--level", "9", "--format", "dense", "--output", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "level 9" in error[0] and "is not finished" in error[0]
    assert main(["export", run_dir, "--level", "1", "--format", "zip", "--output", str(out)]) == 2
    assert "invalid choice: 'zip'" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--level", "1", "--format", "dense", "--output", str(out)]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["cost", run_dir]) == 0
    rows = list(csv.DictReader(open(runs[0]["channel"] / "cost.csv")))
    assert [(row["variant"], row["level"]) for row in rows][:3] == [("dense", "0"), ("iterative_reset", "1"),
                                                                    ("iterative_reset", "2")]
    assert float(rows[0]["remaining_flops_percent"]) == 100.0 > float(rows[2]["remaining_flops_percent"])
    layers = list(csv.DictReader(open(runs[0]["channel"] / "cost_layers.csv")))
    dense_layers = [row for row in layers if row["variant"] == "dense"]
    assert sum(int(row["dense_flops"]) for row in dense_layers) == int(rows[0]["dense_flops"])
    summary = (runs[0]["channel"] / "report" / "summary.md").read_text()
    assert "## Cost per inference" in summary and "remaining" in summary  # the report carries the cost table


@pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (pip install 'ticketlab[export]')")
@pytest.mark.parametrize("fmt", ["onnx-dense", "onnx-compact"])
def test_onnx_exports_run_in_onnxruntime(runs, tmp_path, fmt):
    import onnxruntime

    ticket = load_ticket(runs[0]["channel"], level=2)
    export_ticket(ticket, fmt, tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = torch.from_numpy(session.run(None, {"inputs": ticket.examples[:5].numpy()})[0])  # another batch size
    assert torch.allclose(outputs, _masked_outputs(ticket)[:5], **TOLERANCE)


def test_onnx_without_its_packages_is_one_line_naming_the_install(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    code = main(["export", str(runs[0]["weight"]), "--level", "1", "--format", "onnx-dense",
                 "--output", str(tmp_path / "m.onnx")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "pip install 'ticketlab[export]'" in error[0]
    assert not (tmp_path / "m.onnx").exists()


def test_installed_executable_exports_and_refuses_in_one_line(tmp_path):
    import subprocess
    from pathlib import Path

    installed = Path(sys.executable).parent / "ticketlab"
    command = [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab.cli"]
    done = subprocess.run([*command, "export", str(tmp_path), "--level", "1", "--format", "dense", "--output",
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is not a run directory" in done.stderr
    done = subprocess.run([*command, "export", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--format" in done.stdout


# --- damaged inputs, nothing lost, bsr, the summary (issue 24) ---------------------------------------------------


def _copy_run(run_dir, tmp_path):
    import shutil

    target = tmp_path / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticketlab: error: ") and "Traceback" not in captured.err, lines
    return lines[0]


def _flip_last_byte(path):
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0x01
    path.write_bytes(bytes(payload))


@pytest.mark.parametrize("damage", ["garbage", "flipped"])
def test_cost_and_export_refuse_a_damaged_mask_in_one_line(runs, tmp_path, capsys, damage):
    run_dir = _copy_run(runs[0]["weight"], tmp_path)
    mask = run_dir / "trial_0" / "level_01" / "iterative_reset" / "mask.safetensors"
    if damage == "garbage":
        mask.write_bytes(b"\x13garbage, not a mask" * 5)
    else:
        _flip_last_byte(mask)
    assert main(["cost", str(run_dir)]) == 2
    assert str(mask) in _one_error_line(capsys)
    assert not (run_dir / "cost.csv").exists() and not (run_dir / "cost_layers.csv").exists()
    assert main(["export", str(run_dir), "--level", "1", "--format", "dense", "--output", str(tmp_path / "t")]) == 2
    assert str(mask) in _one_error_line(capsys) and not (tmp_path / "t").exists()
    # a job whose own files are whole still exports
    assert main(["export", str(run_dir), "--level", "2", "--format", "dense", "--output", str(tmp_path / "t")]) == 0


@pytest.mark.parametrize("name", ["config.json", "trial_0/level_01/iterative_reset/result.json"])
def test_a_file_that_is_not_utf8_is_one_line_in_cost_and_export(runs, tmp_path, capsys, name):
    run_dir = _copy_run(runs[0]["weight"], tmp_path)
    (run_dir / name).write_bytes(b"\xff\xfe" + (run_dir / name).read_bytes())
    for argv in (["cost", str(run_dir)],
                 ["export", str(run_dir), "--level", "1", "--format", "prune", "--output", str(tmp_path / "t")]):
        assert main(argv) == 2
        line = _one_error_line(capsys)
        assert str(run_dir / name) in line and "ticketlab verify" in line


def test_an_edited_config_is_refused_against_its_hash(runs, tmp_path, capsys):
    import json

    run_dir = _copy_run(runs[0]["weight"], tmp_path)
    stored = json.loads((run_dir / "config.json").read_text())
    stored["config"]["train"]["lr"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(stored))
    assert main(["cost", str(run_dir)]) == 2
    assert "does not hash to its recorded hash" in _one_error_line(capsys)


@pytest.mark.parametrize("name", ["trial_0/level_01/iterative_reset/weights_final.safetensors", "results.csv",
                                  "config.json"])
def test_export_never_overwrites_a_runs_own_files(runs, tmp_path, capsys, name):
    run_dir = _copy_run(runs[0]["weight"], tmp_path)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert main(["export", str(run_dir), "--level", "1", "--format", "dense", "--output", str(run_dir / name)]) == 2
    line = _one_error_line(capsys)
    assert repr(str(run_dir / name)) in line and "is a file of run directory" in line
    other = runs[0]["channel"] / name  # another run's files neither
    assert main(["export", str(run_dir), "--level", "1", "--format", "dense", "--output", str(other)]) == 2
    assert "is a file of run directory" in _one_error_line(capsys)
    with pytest.raises(TicketlabError, match="is a file of run directory"):
        export_ticket(load_ticket(run_dir, 1), "dense", run_dir / name)
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before
    # a new file beside them is fine
    assert main(["export", str(run_dir), "--level", "1", "--format", "dense", "--output",
                 str(run_dir / "ticket.safetensors")]) == 0


def test_a_failed_export_leaves_no_file(runs, tmp_path, capsys, monkeypatch):
    from ticketlab.export import api

    read_back = api.load_export
    monkeypatch.setattr(api, "load_export", lambda path, model=None: lambda inputs: read_back(path, model)(inputs) + 1)
    out = tmp_path / "exports" / "ticket.safetensors"
    out.parent.mkdir()
    out.write_bytes(b"an earlier export")
    assert main(["export", str(runs[0]["weight"]), "--level", "1", "--format", "sparse", "--output", str(out)]) == 2
    assert "not written" in _one_error_line(capsys)
    assert out.read_bytes() == b"an earlier export" and sorted(out.parent.iterdir()) == [out]


def test_bsr_exports_the_default_model_with_each_block_size_that_tiles_it(tmp_path):
    from ticketlab.errors import ConfigError
    from ticketlab.export.api import Ticket

    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10, hidden=(100, 100)).eval()  # 784-100-100-10: the default model
    masks = {name: (torch.rand_like(weight) < 0.3).float() for name, weight in prunable_weights(model).items()}
    with torch.no_grad():
        for name, weight in prunable_weights(model).items():
            weight.mul_(masks[name])
    ticket = Ticket(model, masks, ExperimentConfig(), (1, 28, 28), 10, torch.rand(16, 1, 28, 28), "job")
    for blocksize in (1, 2):
        result = export_ticket(ticket, "sparse", tmp_path / f"b{blocksize}", sparse_layout="bsr", blocksize=blocksize)
        with torch.no_grad():
            assert torch.allclose(load_export(result.path)(ticket.examples), model(ticket.examples), **TOLERANCE)
    for blocksize in (3, 4, 5):
        with pytest.raises(ConfigError, match=rf"--blocksize {blocksize} does not divide the .*; allowed: 1, 2$"):
            export_ticket(ticket, "sparse", tmp_path / "x", sparse_layout="bsr", blocksize=blocksize)
    assert not (tmp_path / "x").exists()


def test_bsr_block_size_refused_before_any_work_through_the_cli(runs, tmp_path, capsys, monkeypatch):
    from ticketlab.export import api

    run_dir = str(runs[0]["weight"])  # conv2 on 8x8: a 4x9 filter matrix first, so only 1 tiles every matrix
    monkeypatch.setattr(api, "sparse_model", lambda *args: pytest.fail("the export started"))
    assert main(["export", run_dir, "--level", "1", "--format", "sparse", "--sparse-layout", "bsr", "--blocksize",
                 "3", "--output", str(tmp_path / "b")]) == 2
    line = _one_error_line(capsys)
    assert "--blocksize 3 does not divide the 4x9 weight matrix" in line and line.endswith("allowed: 1")
    monkeypatch.undo()
    assert main(["export", run_dir, "--level", "1", "--format", "sparse", "--sparse-layout", "bsr", "--blocksize",
                 "1", "--output", str(tmp_path / "b")]) == 0


def test_the_compact_summary_counts_against_the_original_network(runs, tmp_path, capsys):
    from ticketlab.export.cost import model_cost

    run_dir = runs[0]["channel"]
    ticket = load_ticket(run_dir, 2)
    parameters = sum(parameter.numel() for parameter in ticket.model.parameters())
    original = model_cost(ticket.model, ticket.examples[:1])
    compact = export_ticket(ticket, "compact", tmp_path / "c")
    assert compact.original_cost["parameters"] == parameters and compact.cost["parameters"] < parameters
    assert main(["export", str(run_dir), "--level", "2", "--format", "compact", "--output", str(tmp_path / "c2")]) == 0
    line = capsys.readouterr().out
    effective = compact.cost["effective_flops"]
    assert (f"{compact.cost['nonzero_parameters']:,} of {parameters:,} parameters nonzero; {effective:,} of "
            f"{original.dense_flops:,} FLOPs per example ({100 * effective / original.dense_flops:.1f}%)") in line
