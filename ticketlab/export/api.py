"""Export a ticket of a run directory as a usable model, and read the exports back.

Formats (each file is a safetensors state dict whose metadata says how to rebuild the network: `format`, the run's
`config`, `input_shape`, `num_classes`, the job, and for compact files the channels per group):
- prune: torch.nn.utils.prune's convention (NAME_orig + NAME_mask);
- dense: the masked weights as an ordinary state dict (`model.load_state_dict(safetensors.torch.load_file(p))`);
- compact: a physically smaller network (fewer channels / neurons), for structured tickets;
- sparse: Linear / Conv2d weights as CSR parts, run with torch.sparse kernels;
- onnx-dense / onnx-compact: ONNX graphs of the dense and compact networks (optional extra `ticketlab[export]`).
Every export is read back and run on test examples against the masked model before it is kept (written to a
temporary name, renamed when it matches within `TOLERANCE`). A ticket of a run with prune.n_m keeps its N:M pattern:
the masked weights, and the weights read back from a prune or dense export, are checked to hold at most N nonzeros
in every group of M along the input dimension (torch's semi-structured 2:4 kernels need CUDA; the check runs
everywhere).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.pruning.compact import channel_counts, compact_model, shrink_to
from ticketlab.export.cost import model_cost
from ticketlab.export.prune_convention import load_prune_convention, prune_convention_tensors
from ticketlab.export.sparse import check_bsr_blocksize, dense_state_from_sparse, sparse_model, sparse_tensors
from ticketlab.lottery.integrity import read_finished_job, read_run_config, refuse_run_artifact
from ticketlab.store import load_tensors, load_tensors_and_metadata, save_tensors

FORMATS = ("prune", "dense", "compact", "sparse", "onnx-dense", "onnx-compact")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # on logits; exports differ from the masked model only in summation order
ONNX_INSTALL = "pip install 'ticketlab[export]'  (onnx, onnxscript, onnxruntime)"
CHECK_EXAMPLES = 64


class ExportCheckError(TicketlabError):
    """An export did not reproduce the masked model's outputs (it is not kept)."""


@dataclass
class Ticket:
    """A finished job's network with its final (masked) weights, in eval mode, and what rebuilds it."""

    model: nn.Module
    masks: dict[str, torch.Tensor]
    config: object  # ExperimentConfig
    input_shape: tuple[int, ...]
    num_classes: int
    examples: torch.Tensor  # test inputs for checks
    job: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    run_dir: Path | None = None  # the run it comes from: exports never overwrite that run's files


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    bytes: int
    max_abs_diff: float  # largest |export - masked model| over the check examples' outputs
    cost: dict  # totals of the exported network (parameters, nonzero, dense / effective FLOPs)
    original_cost: dict = field(default_factory=dict)  # the same totals of the masked network it was exported from


def load_ticket(run_dir: str | Path, level: int, trial: int = 0, variant: str | None = None, *,
                model: nn.Module | None = None, data=None) -> Ticket:
    """The trained network of job (trial, level, variant) of a run (level 0: the dense job), masked, eval mode;
    `variant` None is the winning ticket (iterative_reset).

    The run's config.json and the job's sealed result and files are checked first (IntegrityError naming the
    damaged files). Runs with a custom model or data need the same `model` / `data` again."""
    from ticketlab.lottery.keys import DENSE, JobKey
    from ticketlab.lottery.variants import variant_names, winning_ticket

    variant = variant or winning_ticket()
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    task_with_example_inputs(config, run_dir, "export")
    if variant not in variant_names():
        raise ConfigError(f"unknown variant {variant!r}; allowed: {', '.join(variant_names())}")
    for label, value in (("level", level), ("trial", trial)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{label} {value!r} must be an integer >= 0")
    key = JobKey(trial, 0, DENSE) if level == 0 else JobKey(trial, level, variant)
    job_dir = key.directory(run_dir)
    if not (job_dir / "result.json").is_file():
        done = sorted(path.parent.relative_to(run_dir).as_posix() for path in run_dir.glob("trial_*/level_*/*/result.json"))
        raise ConfigError(f"job {key.label()} of {run_dir} is not finished (no {job_dir / 'result.json'}); "
                          f"finished: {', '.join(done[:12]) or 'none'}{' ...' if len(done) > 12 else ''}")
    read_finished_job(job_dir)  # its result and every file it records checked before any is used
    config, data, make_model, example_inputs = run_model_factory(run_dir, config, model, data, "export")
    network = make_model(0)
    network.load_state_dict(load_tensors(job_dir / "weights_final.safetensors"))
    network.eval()
    masks = {name: value.float() for name, value in load_tensors(job_dir / "mask.safetensors").items()}
    examples = example_inputs(data, "test", CHECK_EXAMPLES).cpu()
    return Ticket(network, masks, config, tuple(data.input_shape), int(data.num_classes), examples, key.label(),
                  run_dir=run_dir)


def task_with_example_inputs(config, run_dir: Path, command: str):
    """The run's task; ConfigError in one line if its models cannot run on one example tensor (`example_inputs`)."""
    from ticketlab.tasks import load_task

    task = load_task(config.task)
    if task.example_inputs is None:
        raise ConfigError(f"{command} works on runs of tasks whose model takes one input tensor (classification); "
                          f"run {run_dir} is a {config.task} run, whose tickets are its mask.safetensors and "
                          "weights_*.safetensors files")
    return task


def run_model_factory(run_dir: Path, config, model: nn.Module | None, data, command: str):
    """(config, data, seed -> model, the task's example_inputs) of a run: the run's task builds the network, from
    its own data unless given. ConfigError, before any data is loaded, for a task whose models `command` (export,
    cost) cannot run on one example tensor."""
    from ticketlab.lottery.experiment import model_factory

    if config.model.name.startswith("custom:") and model is None:
        raise ConfigError(f"run {run_dir} used a custom model ({config.model.name}); pass the same model")
    task = task_with_example_inputs(config, run_dir, command)
    if data is None:
        if config.data.name.startswith("custom:"):
            raise ConfigError(f"run {run_dir} used custom data; pass the same data splits")
        from ticketlab.tasks.base import load_task_data

        data = load_task_data(task, config)
    return config, data, model_factory(config, data, model, task), task.example_inputs


def export_ticket(ticket: Ticket, format: str, output: str | Path, *, sparse_layout: str = "csr",
                  blocksize: int = 4) -> ExportResult:
    """Write `ticket` in `format` to `output`, check it reproduces the masked model's outputs, return its size,
    the largest output difference and its cost."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; allowed: {', '.join(FORMATS)}")
    output = Path(output)
    if output.is_dir():
        raise ConfigError(f"--output {str(output)!r} is a directory; give a file name")
    refuse_run_artifact(output, ticket.run_dir)
    if format == "sparse" and sparse_layout == "bsr":
        check_bsr_blocksize(ticket.model, blocksize)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": format, "config": ticket.config.to_json(), "input_shape": json.dumps(ticket.input_shape),
                "num_classes": str(ticket.num_classes), "job": ticket.job}
    n_m = ticket.config.prune.n_m_pattern()
    _check_n_m(ticket, ticket.model.state_dict(), n_m, "the ticket")
    original_cost = model_cost(ticket.model, ticket.examples[:1]).totals()
    with torch.no_grad():
        reference = model_outputs(ticket.model(ticket.examples))
    temporary = output.with_name(f".{output.name}.partial")
    try:
        if format.startswith("onnx"):
            network = compact_model(ticket.model) if format == "onnx-compact" else ticket.model
            outputs = _export_onnx(network, ticket.examples, temporary)
            cost = model_cost(network, ticket.examples[:1]).totals()
        else:
            network = _exported_network(ticket, format, sparse_layout, blocksize)
            tensors, extra = _tensors_of(network, ticket, format, sparse_layout, blocksize)
            save_tensors(temporary, tensors, metadata=metadata | extra)
            reloaded = load_export(temporary, model=_fresh_model(ticket))
            if format in ("prune", "dense"):
                _check_n_m(ticket, reloaded.state_dict(), n_m, f"the {format} export")
            with torch.no_grad():
                outputs = model_outputs(reloaded(ticket.examples))
            cost = model_cost(network if format != "sparse" else ticket.model, ticket.examples[:1]).totals()
        difference = float((outputs - reference).abs().max())
        if not torch.allclose(outputs, reference, **TOLERANCE):
            raise ExportCheckError(f"{format} export of {ticket.job} differs from the masked model by up to "
                                   f"{difference:.3g} (tolerance rtol {TOLERANCE['rtol']}, atol {TOLERANCE['atol']}); "
                                   "not written")
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
    return ExportResult(output, format, output.stat().st_size, difference, cost, original_cost)


def model_outputs(outputs) -> torch.Tensor:
    """A network's outputs as one tensor: a Hugging Face model returns a ModelOutput, whose `logits` they are."""
    if torch.is_tensor(outputs):
        return outputs
    logits = getattr(outputs, "logits", None)
    return logits if torch.is_tensor(logits) else outputs[0]


def n_m_violations(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], n_m: tuple[int, int]) -> list[str]:
    """The masked tensors of `state` holding more than N nonzeros in some group of M consecutive entries of a row."""
    n, m = n_m
    return [name for name in masks
            if int((state[name].detach().reshape(-1, m) != 0).sum(dim=1).max()) > n]


def _check_n_m(ticket: Ticket, state: dict[str, torch.Tensor], n_m: tuple[int, int] | None, what: str) -> None:
    if n_m is None:
        return
    bad = n_m_violations(state, ticket.masks, n_m)
    if bad:
        raise ExportCheckError(f"{what} of {ticket.job} breaks the run's {n_m[0]}:{n_m[1]} pattern in {bad[0]}; "
                               "not written")


def _fresh_model(ticket: Ticket) -> nn.Module:
    import copy

    return copy.deepcopy(ticket.model)


def _exported_network(ticket: Ticket, format: str, layout: str, blocksize: int) -> nn.Module:
    if format == "compact":
        return compact_model(ticket.model)
    if format == "sparse":
        return sparse_model(ticket.model, layout, blocksize)
    return ticket.model


def _tensors_of(network: nn.Module, ticket: Ticket, format: str, layout: str, blocksize: int) -> tuple[dict, dict]:
    if format == "prune":
        return prune_convention_tensors(network, ticket.masks), {}
    if format == "dense":
        return dict(network.state_dict()), {}
    if format == "compact":
        return dict(network.state_dict()), {"channels": json.dumps(channel_counts(network))}
    return sparse_tensors(network), {"sparse_layout": layout, "sparse_blocksize": str(blocksize)}


def load_export(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild the network of a prune / dense / compact / sparse export, in eval mode.

    `model` is a module of the run's architecture (needed for custom models; built-in ones are rebuilt from the
    file's metadata). A prune export comes back with torch.nn.utils.prune's hooks attached."""
    tensors, metadata = load_tensors_and_metadata(Path(path))
    format = metadata.get("format")
    if format not in FORMATS:
        raise ConfigError(f"{path} is not a ticketlab export (metadata format {format!r})")
    if model is None:
        model = _model_from_metadata(metadata)
    if format == "prune":
        return load_prune_convention(model, tensors).eval()
    if format == "compact":
        model = shrink_to(model, json.loads(metadata["channels"]))
        model.load_state_dict(tensors)
        return model.eval()
    if format == "sparse":
        model.load_state_dict(dense_state_from_sparse(tensors, model))
        blocksize = metadata.get("sparse_blocksize", "4")
        if not blocksize.isdigit() or int(blocksize) < 1:
            raise ConfigError(f"{path}: metadata sparse_blocksize {blocksize!r} is not a block size")
        return sparse_model(model, metadata.get("sparse_layout", "csr"), int(blocksize)).eval()
    model.load_state_dict(tensors)
    return model.eval()


def _model_from_metadata(metadata: dict[str, str]) -> nn.Module:
    """The export's network rebuilt by its task from the recorded config, input shape and class count
    (`Task.model_for_shapes`); ConfigError for a custom model or a task that cannot."""
    from ticketlab.config import config_from_dict
    from ticketlab.tasks import load_task

    config = config_from_dict(json.loads(metadata["config"]))
    model_for_shapes = None if config.model.name.startswith("custom:") else load_task(config.task).model_for_shapes
    if model_for_shapes is None:
        raise ConfigError(f"the export's model ({config.model.name}, task {config.task}) cannot be rebuilt from "
                          "its metadata; pass a module of the same architecture")
    return model_for_shapes(config, tuple(json.loads(metadata["input_shape"])), int(metadata["num_classes"]))


def _export_onnx(network: nn.Module, examples: torch.Tensor, path: Path) -> torch.Tensor:
    """Export to ONNX (batch axis dynamic) and run it with onnxruntime; returns its outputs on `examples`."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise ConfigError(f"ONNX export needs onnx and onnxruntime: {ONNX_INSTALL}") from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (examples,), str(path), input_names=["inputs"], output_names=["logits"],
                          dynamic_axes={"inputs": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"inputs": examples.numpy()})[0])
