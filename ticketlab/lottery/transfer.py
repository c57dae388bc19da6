"""Ticket transfer across datasets and optimizers (Morcos et al., 2019, "One ticket to win them all").

For each chosen level of a source run's winning tickets (`iterative_reset`), the target's network (same
architecture, output layer sized for the target's classes) starts from the source ticket: every tensor but the
output layer's is the source's masked start (θ0, or θk with late rewinding), every mask but the output layer's is
the source's, and it trains on the target with the target's protocol (`train.*`, which may name another optimizer).

The output layer is new: freshly initialized (the source's classes are not the target's) and, by default, dense
(`output_layer="dense"`): its source mask describes connections to classes the target does not have, and it
holds few weights (0.4% of LeNet-300-100's with 10 classes), so keeping it whole changes weights remaining by
little while not crippling a classifier that starts from scratch. `output_layer="masked"` instead keeps a random
subset of it at the source's output-layer sparsity.

Across tasks (Chen et al. 2020's universal subnetwork: an `mlm` ticket fine-tuned on a `glue` task), a target task
takes the tickets of the tasks it names in `Task.tickets_from`: the tensors both networks hold (same name and shape,
e.g. BERT's encoder) start from the source ticket with its masks; the target's others (the classifier, a pooler
the MLM checkpoint lacks) are freshly initialized, as the output layer is, and stay dense.

Controls, on the target:
- `target_found`: the target's own IMP tickets, a normal `find_tickets` run of the target config under the same
  root (so it is the very run directory `ticketlab find` would make, and is reused when present);
- `dense`: that run's level 0;
- `random_ticket`: a random mask with the transferred ticket's per-layer counts and a fresh initialization
  (Morcos et al.'s random ticket).

Layout: ``ROOT/transfer_<target data>_<model>_<hash>/`` (hash of the target config and the settings) holds
transfer.json, transfer.csv, the figure, and one directory per source run, named like it, with config.json (the
target config) and ``trial_T/level_LL/{transferred,random_ticket}/`` job directories written as every job's are
(sealed result.json, content-hashed safetensors): re-running trains nothing new, a killed run resumes exactly, and
`ticketlab verify` checks each source directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError
from ticketlab.lottery.experiment import find_tickets, resolve_device
from ticketlab.lottery.integrity import finished_job_problems, read_run_config, repair_run
from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.keys import JobKey
from ticketlab.lottery.run_lock import run_lock
from ticketlab.lottery.transfer_jobs import SourceRun, output_prefix_of, train_transfer_jobs
from ticketlab.lottery.transfer_results import (
    RANDOM_TICKET,
    SOURCE_RECORD,
    TRANSFERRED,
    transfer_rows,
    write_transfer_csv,
)
from ticketlab.lottery.variants import winning_ticket
from ticketlab.lottery.workers import model_factory
from ticketlab.pruning import output_layer_name
from ticketlab.store import load_tensors, read_json, write_json
from ticketlab.tasks import load_task
from ticketlab.tasks.base import load_task_data
from ticketlab.tasks.data_settings import without_task_sections

TRANSFER_VARIANTS = (TRANSFERRED, RANDOM_TICKET)
OUTPUT_LAYER_MODES = ("dense", "masked")


@dataclass(frozen=True)
class TransferResult:
    """Where a transfer lives: its directory, transfer.csv, the target's own run, the rows and the figure files."""

    transfer_dir: Path
    transfer_csv: Path
    target_run: Path
    rows: list[dict]
    figure_files: list[Path]


def load_source(run_dir: str | Path, target_task: str | None = None) -> SourceRun:
    """A source run directory's config; ConfigError if it is not a run directory of a task whose tickets
    `target_task` (default: the source's own) takes: its own when it `transfers`, or one it names in
    `tickets_from`."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError(f"source run {str(run_dir)!r} is not a run directory (no config.json)")
    config = read_run_config(run_dir)  # checked against its hash; IntegrityError naming it when damaged
    target_task = target_task or config.task
    if target_task != config.task:
        taken = load_task(target_task).tickets_from
        if config.task not in taken:
            takes = f"takes the tickets of {', '.join(taken)} runs" if taken else "takes no other task's tickets"
            raise ConfigError(f"source run {str(run_dir)!r} is a {config.task!r} run; a {target_task!r} target {takes}")
    elif not load_task(config.task).transfers:
        raise ConfigError(f"source run {str(run_dir)!r} is a {config.task!r} run, whose tickets do not transfer to "
                          "other data; transfer needs a task with a class-sized output layer (classification)")
    if config.model.name.startswith("custom:") or config.data.name.startswith("custom:"):
        raise ConfigError(f"source run {str(run_dir)!r} used a custom model or data; transfer needs built-in ones")
    return SourceRun(run_dir, config)


def target_config_for(source: ExperimentConfig, **changes) -> ExperimentConfig:
    """The source's config with dotted changes (e.g. {'data.classes': '5-9', 'train.optimizer': 'sgd'}). A change
    of `task` leaves the source task's own sections behind (an `mlm` run's `mlm.*` configures nothing of a `glue`
    target)."""
    new_task = changes.get("task")
    if new_task is not None and new_task != source.task:
        source = without_task_sections(source)
    return source.replace(**changes) if changes else source


def transfer_directory(target: ExperimentConfig, root: str | Path, output_layer: str = "dense") -> Path:
    """`root/transfer_<target data>_<model>_<hash>`: the hash covers the target config and the settings."""
    settings = json.dumps({"target": target.hash(), "output_layer": output_layer}, sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:16]
    return Path(root) / ("transfer_" + target.run_name().rsplit("_", 1)[0] + "_" + digest)


def transfer_tickets(
    sources: list[str | Path],
    target: ExperimentConfig,
    *,
    levels: list[int] | None = None,
    root: str | Path | None = None,
    output_layer: str = "dense",
    workers: int = 1,
    population: int | None = None,
    device: str = "auto",
    progress: bool = True,
    on_finished: Callable[[Path, list[dict]], list[Path]] | None = None,
    checkpoint_interval_s: float = 30.0,
    **executor,
) -> TransferResult:
    """Train each source run's tickets (at `levels`, default every finished level) on `target`, with the
    target's own IMP tickets, random tickets and the dense network as controls; write transfer.csv
    (`ticketlab.transfer_tickets` adds the figure).

    `target` is a full config (see `target_config_for`); its `trials` are the trials transferred (source trial t
    gives target trial t) and its architecture must be the sources'. `root` (default: the first source's parent)
    holds the transfer directory and the target's own run. Re-running trains nothing new; a killed run resumes.
    `executor` (find_tickets' executor, ray_address, ray_cpus_per_task) runs the target's own run.
    `on_finished` is called with the transfer directory and the rows once transfer.csv is written, still under the
    lock (the report layer draws the figure there); the files it returns are the result's `figure_files`.
    """
    target = target.validate()
    if output_layer not in OUTPUT_LAYER_MODES:
        raise ConfigError(f"output layer {output_layer!r} unknown; allowed: {', '.join(OUTPUT_LAYER_MODES)}")
    if not sources:
        raise ConfigError("transfer needs at least one source run directory")
    runs = [load_source(path, target.task) for path in sources]
    names = [run.name for run in runs]
    repeated = [name for index, name in enumerate(names) if name in names[:index]]
    if repeated:
        raise ConfigError(f"source run {repeated[0]!r} is given twice (source directories must differ in name)")
    for run in runs:
        _check_architecture(run, target)
    root = Path(root) if root is not None else runs[0].run_dir.parent
    transfer_dir = transfer_directory(target, root, output_layer)
    chosen = {run.name: _chosen_levels(run, target.trials, levels) for run in runs}

    task = load_task(target.task)
    torch_device = resolve_device(device)
    splits = load_task_data(task, target).to(torch_device)
    make_model = model_factory(target, splits, None, task)
    template = make_model(0)
    for run in runs:  # before anything trains: a mismatch the data settings did not bridge is refused here
        _check_shapes(run, target, template, splits.input_shape, task.prunable(template))
    if output_layer == "masked":
        _check_masked_output_layer(runs, target, template, task.prunable(template))

    # the target's own tickets and dense network: an ordinary experiment, reused when it is already there
    target_run = _target_experiment(target, root, workers, population, device, progress, checkpoint_interval_s,
                                    executor)
    with run_lock(transfer_dir):
        write_json(transfer_dir / "transfer.json", {
            "target": target.to_dict(), "target_hash": target.hash(), "output_layer": output_layer,
            "target_run": str(target_run.resolve()),
        })
        for run in runs:
            ctx = _source_context(run, target, transfer_dir, splits, task, torch_device, checkpoint_interval_s)
            keys = [JobKey(trial, level, variant) for trial in range(target.trials) for level in chosen[run.name]
                    for variant in TRANSFER_VARIANTS if not (variant == RANDOM_TICKET and level == 0)]
            repair_run(ctx, {key: () for key in keys})
            train_transfer_jobs(ctx, run, keys, output_layer, population, progress)
        rows = transfer_rows(transfer_dir, target_run, target)
        csv_path = write_transfer_csv(transfer_dir / "transfer.csv", rows)
        figure_files = on_finished(transfer_dir, rows) if on_finished is not None else []
    return TransferResult(transfer_dir, csv_path, target_run, rows, figure_files)


# --- checks ----------------------------------------------------------------------------------------


def _check_architecture(run: SourceRun, target: ExperimentConfig) -> None:
    if target.task != run.config.task:
        return  # across tasks (load_source allowed the pair) the shared tensors' shapes decide (_check_shapes)
    if run.config.model != target.model:
        changed = [name for name in ("name", "hidden", "init", "width", "depth", "dropout")
                   if getattr(run.config.model, name) != getattr(target.model, name)]
        field = changed[0] if changed else "name"
        raise ConfigError(f"model.{field} {getattr(target.model, field)!r} differs from the source run's "
                          f"{getattr(run.config.model, field)!r} ({run.run_dir}); a ticket transfers to the same "
                          "architecture only")


def _chosen_levels(run: SourceRun, trials: int, levels: list[int] | None) -> list[int]:
    """The source levels to transfer: `levels`, or every level finished in all `trials` trials; ConfigError
    naming the first ticket that is missing or damaged."""
    if trials > run.config.trials:
        raise ConfigError(f"trials {trials} is more than the source run's {run.config.trials} ({run.run_dir})")
    if levels is None:
        found, level = [], 0
        while all((run.ticket_dir(trial, level) / "result.json").exists() for trial in range(trials)):
            found.append(level)
            level += 1
        if not found:
            raise ConfigError(f"source run {run.run_dir} has no finished dense network for all {trials} trials; "
                              f"finish it first: ticketlab find --config {run.run_dir / 'config.json'}")
        levels = found
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise ConfigError(f"level {level!r} must be an integer >= 0")
        for trial in range(trials):
            job_dir = run.ticket_dir(trial, level)
            if not (job_dir / "result.json").exists():
                raise ConfigError(f"source run {run.run_dir} has no finished ticket at trial {trial} level {level}; "
                                  f"finish it (ticketlab find --config {run.run_dir / 'config.json'}) or choose "
                                  "other --levels")
            problems = finished_job_problems(job_dir)
            if problems:
                raise ConfigError(f"source ticket {job_dir} is damaged ({problems[0]}); run ticketlab find on the "
                                  "source again to recompute it")
    return sorted(set(levels))


def _target_experiment(target, root, workers, population, device, progress, checkpoint_interval_s,
                       executor) -> Path:
    """Run (or reuse) the target's own IMP experiment: its tickets are the `target_found` control. Variants and
    trials already recorded in that run directory are kept, so its results.csv keeps every curve it had."""
    variants, trials = (winning_ticket(),), target.trials
    existing = Path(root) / target.run_name() / "config.json"
    if existing.is_file():
        try:
            stored = read_json(existing)["config"]
            variants = tuple(dict.fromkeys([*stored.get("variants", []), winning_ticket()]))
            trials = max(trials, int(stored.get("trials", trials)))
        except (ValueError, KeyError, TypeError):
            pass  # find_tickets reports a damaged config.json in its own words
    config = target.replace(variants=list(variants), trials=trials)
    result = find_tickets(config, root=root, workers=workers, population=population, device=device,
                          progress=progress, checkpoint_interval_s=checkpoint_interval_s, **executor)
    return result.run_dir


# --- source directories ----------------------------------------------------------------------------


def _source_context(run, target, transfer_dir, splits, task, device, checkpoint_interval_s) -> ExperimentContext:
    """The target's experiment context rooted at the source's directory inside the transfer directory."""
    run_dir = transfer_dir / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {"hash": target.hash(), "fingerprint": f"transfer-from:{run.name}",
                                         "config": target.to_dict()})
    write_json(run_dir / SOURCE_RECORD, {"source_run": str(run.run_dir.resolve()), "source_hash": run.config.hash(),
                                         "source_config": run.config.to_dict()})
    return ExperimentContext(config=target, run_dir=run_dir, data=splits, device=device, task=task,
                             make_model=model_factory(target, splits, None, task),
                             checkpoint_interval_s=checkpoint_interval_s)


def _check_shapes(run: SourceRun, target: ExperimentConfig, model: nn.Module, input_shape: tuple,
                 prunable: dict[str, nn.Parameter]) -> None:
    """Every tensor of the target's `model` but the output layer's must have the source's shape (across tasks:
    every tensor the source holds too, and at least one prunable one); ConfigError naming the first that does
    not (an input-shape difference that data.image_size / data.channels did not bridge)."""
    source_state = load_tensors(run.ticket_dir(0, 0) / "weights_init.safetensors")
    output = output_prefix_of(model)
    across_tasks = run.config.task != target.task
    if across_tasks and not any(name in source_state for name in prunable):
        raise ConfigError(f"the {run.config.task} source network ({run.run_dir}) holds none of the {target.task} "
                          f"target's pruned tensors (e.g. {next(iter(prunable), '?')!r}); start both from the same "
                          "pre-trained model directory")
    for name, value in model.state_dict().items():
        if name.startswith(output) or (across_tasks and name not in source_state):
            continue
        if name not in source_state:
            raise ConfigError(f"the source network ({run.run_dir}) has no tensor {name!r}; the architectures differ")
        if tuple(source_state[name].shape) != tuple(value.shape):
            raise ConfigError(
                f"cannot transfer {run.config.data.name} tickets to {target.data.name}: tensor {name} is "
                f"{list(source_state[name].shape)} in the source but {list(value.shape)} on the target (input "
                f"{list(input_shape)}); set --data.image_size and --data.channels to the source's input shape"
                if not across_tasks else f"cannot transfer {run.config.task} tickets to {target.task}: tensor {name} "
                f"is {list(source_state[name].shape)} in the source but {list(value.shape)} on the target; start both "
                "from the same pre-trained model directory")


def _check_masked_output_layer(runs: list[SourceRun], target: ExperimentConfig, model: nn.Module,
                               prunable: dict[str, nn.Parameter]) -> None:
    """`output_layer="masked"` keeps the source output layer's sparsity: the target must prune its output layer,
    and every source must have pruned one of the same name."""
    output = output_layer_name(model)
    if output not in prunable:
        raise ConfigError(f"output layer 'masked' keeps the source's sparsity in {output}, but the {target.task} "
                          "target does not prune it; use the default --output-layer dense")
    for run in runs:
        mask_names = load_tensors(run.ticket_dir(0, 0) / "mask.safetensors")
        if output not in mask_names:
            raise ConfigError(f"output layer 'masked': the source run {run.run_dir} has no mask for {output}; use "
                              "the default --output-layer dense")
