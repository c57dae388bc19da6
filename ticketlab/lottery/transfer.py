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

import csv
import hashlib
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ticketlab.config import ExperimentConfig, config_from_dict
from ticketlab.errors import ConfigError
from ticketlab.lottery.experiment import find_tickets, model_factory, resolve_device
from ticketlab.lottery.integrity import (
    finished_job_problems,
    job_key_of,
    read_finished_jobs,
    read_run_config,
    read_sealed_result,
    repair_run,
    run_lock,
)
from ticketlab.lottery.jobs import (
    DENSE,
    ExperimentContext,
    JobKey,
    JobStart,
    finish_job,
    is_done,
)
from ticketlab.lottery.planner import choose_population_size, stacks_jobs
from ticketlab.pruning import full_masks, keep_top, output_layer_name, random_scores, remaining_counts
from ticketlab.seeds import derive_seed
from ticketlab.store import atomic_write_bytes, load_tensors, read_json, save_tensors, write_json
from ticketlab.tasks import load_task

TRANSFERRED, RANDOM_TICKET, TARGET_FOUND = "transferred", "random_ticket", "target_found"
TRANSFER_VARIANTS = (TRANSFERRED, RANDOM_TICKET)
OUTPUT_LAYER_MODES = ("dense", "masked")
TRANSFER_COLUMNS = (
    "source", "source_data", "source_optimizer", "target", "optimizer", "trial", "level",
    "weights_remaining_percent", "variant", "early_stop_iteration", "early_stop_test_accuracy",
    "early_stop_val_loss", "final_test_accuracy", "final_train_accuracy", "final_iteration",
)
SOURCE_RECORD = "source.json"


@dataclass(frozen=True)
class TransferResult:
    """Where a transfer lives: its directory, transfer.csv, the target's own run, the rows and the figure files."""

    transfer_dir: Path
    transfer_csv: Path
    target_run: Path
    rows: list[dict]
    figure_files: list[Path]


@dataclass(frozen=True)
class SourceRun:
    """A finished source run: its directory, config and the levels of its ticket chain that are done."""

    run_dir: Path
    config: ExperimentConfig

    @property
    def name(self) -> str:
        return self.run_dir.name

    def ticket_dir(self, trial: int, level: int) -> Path:
        return JobKey(trial, 0, DENSE).directory(self.run_dir) if level == 0 else \
            JobKey(trial, level, "iterative_reset").directory(self.run_dir)


def data_label(config: ExperimentConfig) -> str:
    """'fashion_mnist 0-4 adam': the dataset, its class subset and the optimizer (a row/column of the matrix)."""
    classes = f" {config.data.classes}" if config.data.classes is not None else ""
    return f"{config.data.name}{classes} {config.train.optimizer}"


def load_source(run_dir: str | Path) -> SourceRun:
    """A source run directory's config; ConfigError if it is not a run directory of the classification task."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError(f"source run {str(run_dir)!r} is not a run directory (no config.json)")
    config = read_run_config(run_dir)  # checked against its hash; IntegrityError naming it when damaged
    if config.task != "classification":
        raise ConfigError(f"source run {str(run_dir)!r} is a {config.task!r} run; transfer needs classification")
    if config.model.name.startswith("custom:") or config.data.name.startswith("custom:"):
        raise ConfigError(f"source run {str(run_dir)!r} used a custom model or data; transfer needs built-in ones")
    return SourceRun(run_dir, config)


def target_config_for(source: ExperimentConfig, **changes) -> ExperimentConfig:
    """The source's config with dotted changes (e.g. {'data.classes': '5-9', 'train.optimizer': 'sgd'})."""
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
    report: bool = True,
    checkpoint_interval_s: float = 30.0,
    **executor,
) -> TransferResult:
    """Train each source run's tickets (at `levels`, default every finished level) on `target`, with the
    target's own IMP tickets, random tickets and the dense network as controls; write transfer.csv and a figure.

    `target` is a full config (see `target_config_for`); its `trials` are the trials transferred (source trial t
    gives target trial t) and its architecture must be the sources'. `root` (default: the first source's parent)
    holds the transfer directory and the target's own run. Re-running trains nothing new; a killed run resumes.
    `executor` (find_tickets' executor, ray_address, ray_cpus_per_task) runs the target's own run.
    """
    target = target.validate()
    if output_layer not in OUTPUT_LAYER_MODES:
        raise ConfigError(f"output layer {output_layer!r} unknown; allowed: {', '.join(OUTPUT_LAYER_MODES)}")
    if not sources:
        raise ConfigError("transfer needs at least one source run directory")
    runs = [load_source(path) for path in sources]
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
    splits = task.load_data(target.data).to(torch_device)
    make_model = model_factory(target, splits, None, task)
    for run in runs:  # before anything trains: a mismatch the data settings did not bridge is refused here
        _check_shapes(run, target, make_model(0), splits.input_shape)

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
            _train_jobs(ctx, run, keys, output_layer, population, progress)
        rows = transfer_rows(transfer_dir, target_run, target)
        csv_path = write_transfer_csv(transfer_dir / "transfer.csv", rows)
        figure_files: list[Path] = []
        if report:
            from ticketlab.report.transfer import write_transfer_figure

            figure_files = write_transfer_figure(rows, transfer_dir / "transfer")
    return TransferResult(transfer_dir, csv_path, target_run, rows, figure_files)


# --- checks ----------------------------------------------------------------------------------------


def _check_architecture(run: SourceRun, target: ExperimentConfig) -> None:
    if run.config.model != target.model:
        changed = [name for name in ("name", "hidden", "init", "width", "depth", "dropout")
                   if getattr(run.config.model, name) != getattr(target.model, name)]
        field = changed[0] if changed else "name"
        raise ConfigError(f"model.{field} {getattr(target.model, field)!r} differs from the source run's "
                          f"{getattr(run.config.model, field)!r} ({run.run_dir}); a ticket transfers to the same "
                          "architecture only")
    if target.task != run.config.task:
        raise ConfigError(f"task {target.task!r} differs from the source run's {run.config.task!r}")


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
    variants, trials = ("iterative_reset",), target.trials
    existing = Path(root) / target.run_name() / "config.json"
    if existing.is_file():
        try:
            stored = read_json(existing)["config"]
            variants = tuple(dict.fromkeys([*stored.get("variants", []), "iterative_reset"]))
            trials = max(trials, int(stored.get("trials", trials)))
        except (ValueError, KeyError, TypeError):
            pass  # find_tickets reports a damaged config.json in its own words
    config = target.replace(variants=list(variants), trials=trials)
    result = find_tickets(config, root=root, workers=workers, population=population, device=device,
                          progress=progress, report=False, checkpoint_interval_s=checkpoint_interval_s, **executor)
    return result.run_dir


# --- jobs ------------------------------------------------------------------------------------------


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


def _check_shapes(run: SourceRun, target: ExperimentConfig, model: nn.Module, input_shape: tuple) -> None:
    """Every tensor of the target's `model` but the output layer's must have the source's shape; ConfigError
    naming the first that does not (an input-shape difference that data.image_size / data.channels did not
    bridge)."""
    source_state = load_tensors(run.ticket_dir(0, 0) / "weights_init.safetensors")
    output = _output_prefix(model)
    for name, value in model.state_dict().items():
        if name.startswith(output):
            continue
        if name not in source_state:
            raise ConfigError(f"the source network ({run.run_dir}) has no tensor {name!r}; the architectures differ")
        if tuple(source_state[name].shape) != tuple(value.shape):
            raise ConfigError(
                f"cannot transfer {run.config.data.name} tickets to {target.data.name}: tensor {name} is "
                f"{list(source_state[name].shape)} in the source but {list(value.shape)} on the target (input "
                f"{list(input_shape)}); set --data.image_size and --data.channels to the source's input shape")


def _output_prefix(model: nn.Module) -> str:
    """State-dict prefix of the output layer's module (its weight, bias and any buffers)."""
    return output_layer_name(model).rsplit(".", 1)[0] + "."


def transfer_start(ctx: ExperimentContext, run: SourceRun, key: JobKey, output_layer: str) -> JobStart:
    """The job's mask (computed once, stored in its directory) and its masked starting weights.

    transferred: every tensor except the output layer's is the source ticket's masked start; the output layer
    is the target model's fresh initialization. random_ticket: a fresh initialization under a random mask with
    the transferred ticket's per-layer counts.
    """
    job_dir = key.directory(ctx.run_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    seed, trial, level = ctx.config.seed, key.trial, key.level
    template = ctx.make_model(0)
    output_prefix = _output_prefix(template)
    ticket_mask = transferred_mask(ctx, run, trial, level, output_layer)
    if key.variant == TRANSFERRED:
        mask = ticket_mask
        model = ctx.make_model(derive_seed(seed, trial, "transfer_output", level))
        start = _source_start(run, trial, level)
        state = model.state_dict()
        for name in state:
            if not name.startswith(output_prefix):
                state[name] = start[name].clone()
        model.load_state_dict(state)
    else:
        shapes = ctx.task.prunable(template)
        scores = random_scores(shapes, derive_seed(seed, trial, "random_ticket_mask", level))
        mask = keep_top(scores, remaining_counts(ticket_mask))
        model = ctx.make_model(derive_seed(seed, trial, "random_ticket", level))
    mask_path = job_dir / "mask.safetensors"
    if mask_path.exists():  # computed at the job's first start; equal by construction, reused as it is
        mask = {name: value.float() for name, value in load_tensors(mask_path).items()}
    else:
        save_tensors(mask_path, {name: value.bool() for name, value in mask.items()})
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in mask.items():
            parameters[name].mul_(value)
    save_tensors(job_dir / "weights_init.safetensors", model.state_dict())
    return JobStart(mask=mask, model=model, start_step=ctx.rewind_step, total_steps=ctx.total_steps,
                    optimizer_state=None, data_seed=derive_seed(seed, trial, "data_order"), snapshot_steps=(),
                    on_snapshot=None, augment=ctx.task.per_step_hook(ctx.config, model))


def transferred_mask(ctx: ExperimentContext, run: SourceRun, trial: int, level: int,
                     output_layer: str = "dense") -> dict[str, torch.Tensor]:
    """The source ticket's masks for every prunable tensor but the output layer's; the output layer dense, or
    (`masked`) a random mask keeping the source output layer's fraction of its weights."""
    template = ctx.make_model(0)
    weights = ctx.task.prunable(template)
    output_name = output_layer_name(template)
    source_dir = run.ticket_dir(trial, level)
    source_mask = {name: value.float() for name, value in load_tensors(source_dir / "mask.safetensors").items()}
    mask = full_masks(weights)
    for name in weights:
        if name != output_name:
            mask[name] = source_mask[name].clone()
    if output_layer == "masked" and level > 0:
        kept = source_mask[output_name].sum().item() / source_mask[output_name].numel()
        count = int(round(kept * weights[output_name].numel()))
        scores = random_scores({output_name: weights[output_name]}, derive_seed(ctx.config.seed, trial,
                                                                                "transfer_output_mask", level))
        mask[output_name] = keep_top(scores, {output_name: count})[output_name]
    return mask


def _source_start(run: SourceRun, trial: int, level: int) -> dict[str, torch.Tensor]:
    """The source ticket's masked starting weights: its weights_init (θ0, or θk under late rewinding, masked);
    for level 0 the dense start, θk when the source rewinds."""
    dense_dir = run.ticket_dir(trial, 0)
    if level == 0 and (dense_dir / "weights_rewind.safetensors").exists():
        return load_tensors(dense_dir / "weights_rewind.safetensors")
    return load_tensors(run.ticket_dir(trial, level) / "weights_init.safetensors")


def _train_jobs(ctx: ExperimentContext, run: SourceRun, keys: list[JobKey], output_layer: str,
                population: int | None, progress: bool) -> None:
    """Train the jobs not done: stacked populations where the model stacks, else one at a time. Batches are cut
    from the full job list (never from what is done), so a resumed run re-forms the populations it started."""
    template = ctx.make_model(0)
    size = (population or choose_population_size(ctx)) if stacks_jobs(ctx, template, population) else 1
    size = max(1, min(size, len(keys)))
    pending_total = sum(not is_done(ctx, key) for key in keys)
    bar = _bar(ctx, run, pending_total * (ctx.total_steps - ctx.rewind_step), progress)
    try:
        for index in range(0, len(keys), size):
            batch = [key for key in keys[index:index + size] if not is_done(ctx, key)]
            if not batch:
                continue
            started = time.time()
            starts = [transfer_start(ctx, run, key, output_layer) for key in batch]
            if size == 1:
                start = starts[0]
                result = ctx.task.train(
                    start.model.to(ctx.device), ctx.data, ctx.config.train, masks=start.mask,
                    data_seed=start.data_seed, start_step=start.start_step, total_steps=start.total_steps,
                    optimizer_state=None, job_dir=batch[0].directory(ctx.run_dir), on_progress=bar.update,
                    checkpoint_interval_s=ctx.checkpoint_interval_s, augment=start.augment)
                finish_job(ctx, batch[0], start, result, wall_time_s=time.time() - started, source=run.name)
                continue
            from ticketlab.training.population import PopulationMember, train_population

            members = [PopulationMember(model=start.model, masks=start.mask, data_seed=start.data_seed,
                                        start_step=start.start_step, total_steps=start.total_steps,
                                        optimizer_state=None, job_dir=key.directory(ctx.run_dir))
                       for key, start in zip(batch, starts)]
            results = train_population(members, ctx.data, ctx.config.train, on_progress=bar.update,
                                       checkpoint_interval_s=ctx.checkpoint_interval_s, augment=starts[0].augment)
            wall_time_s = time.time() - started
            for key, start, result in zip(batch, starts, results):
                finish_job(ctx, key, start, result, wall_time_s=wall_time_s, population_size=len(batch),
                           source=run.name)
    finally:
        bar.close()


def _bar(ctx: ExperimentContext, run: SourceRun, total: int, enabled: bool):
    if not enabled or total == 0:
        from ticketlab.lottery.experiment import _NoBar

        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="it", unit_scale=True, dynamic_ncols=True, file=sys.stderr,
                desc=f"transfer {run.name}")


# --- results ---------------------------------------------------------------------------------------


def transfer_rows(transfer_dir: Path, target_run: Path, target: ExperimentConfig) -> list[dict]:
    """transfer.csv's rows: every finished transfer job of every source directory, then the target's own
    tickets (`target_found`, levels >= 1) and its dense network (`dense`, level 0), trial by trial."""
    rows = []
    target_label = data_label(target)
    for source_dir in sorted(path for path in transfer_dir.iterdir() if (path / SOURCE_RECORD).is_file()):
        record = read_json(source_dir / SOURCE_RECORD)
        source_config = config_from_dict(record["source_config"])
        for result_path in sorted(source_dir.glob("trial_*/level_*/*/result.json")):
            result = read_sealed_result(result_path)
            rows.append(_row(source_dir.name, data_label(source_config), source_config.train.optimizer,
                             target_label, target, result))
    for result_path in sorted(target_run.glob("trial_*/level_*/*/result.json")):
        variant = result_path.parent.name
        if variant not in (DENSE, "iterative_reset"):
            continue
        result = read_sealed_result(result_path) | {"variant": DENSE if variant == DENSE else TARGET_FOUND}
        if result["trial"] < target.trials:
            rows.append(_row(target_run.name, target_label, target.train.optimizer, target_label, target, result))
    return rows


def _row(source: str, source_data: str, source_optimizer: str, target_label: str, target: ExperimentConfig,
         result: dict) -> dict:
    values = {"source": source, "source_data": source_data, "source_optimizer": source_optimizer,
              "target": target_label, "optimizer": target.train.optimizer}
    return values | {column: result.get(column) for column in TRANSFER_COLUMNS if column not in values}


def write_transfer_csv(path: Path, rows: list[dict]) -> Path:
    """Write rows with TRANSFER_COLUMNS (plain CSV: readable without ticketlab), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TRANSFER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(Path(path), buffer.getvalue().encode())
    return Path(path)


ROW_VARIANTS = (TRANSFERRED, RANDOM_TICKET, TARGET_FOUND, DENSE)
TRANSFER_INT_COLUMNS = ("trial", "level", "early_stop_iteration", "final_iteration")
TRANSFER_FLOAT_COLUMNS = ("weights_remaining_percent", "early_stop_test_accuracy", "early_stop_val_loss",
                          "final_test_accuracy", "final_train_accuracy")


def read_transfer_csv(path: str | Path) -> list[dict]:
    """transfer.csv's rows with numbers parsed (trial/level/iterations as int, the rest of the metrics float; an
    empty metric cell is NaN). ConfigError naming the file, line and cell for a file that is not UTF-8 CSV, lacks
    a column, has a short row or a cell that is not a number, or has no rows."""
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a transfer.csv (not UTF-8 text); rerun `ticketlab transfer` to rewrite "
                          "it") from None
    try:
        table = list(csv.reader(lines))
    except csv.Error as error:
        raise ConfigError(f"{path} is not a transfer.csv ({error})") from None
    table = [row for row in table if any(cell.strip() for cell in row)]
    if not table:
        raise ConfigError(f"{path} is empty; a transfer.csv has a header and one row per transfer job")
    header = [cell.strip() for cell in table[0]]
    missing = [column for column in TRANSFER_COLUMNS if column not in header]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
    if len(table) == 1:
        raise ConfigError(f"{path} has no rows; run `ticketlab transfer` to completion first")
    return [_transfer_row(dict(zip(header, cells)), f"{path}:{number}", len(header), len(cells))
            for number, cells in enumerate(table[1:], start=2)]


def _transfer_row(cells: dict[str, str], where: str, expected: int, found: int) -> dict:
    if found != expected:
        raise ConfigError(f"{where}: expected {expected} fields, got {found} (a truncated or damaged row)")
    row = dict(cells)
    for column in ("source", "source_data", "target", "variant"):
        if not row[column].strip():
            raise ConfigError(f"{where}: column {column!r} is empty")
    if row["variant"] not in ROW_VARIANTS:
        raise ConfigError(f"{where}: variant {row['variant']!r} unknown; allowed: {', '.join(ROW_VARIANTS)}")
    for column in TRANSFER_INT_COLUMNS:
        text = row[column].strip()
        if not (text.isascii() and text.isdigit() or column not in ("trial", "level") and text == ""):
            raise ConfigError(f"{where}: column {column!r} is {text!r}, not an integer >= 0")
        row[column] = int(text) if text else None
    for column in TRANSFER_FLOAT_COLUMNS:
        text = row[column].strip()
        try:
            row[column] = float(text) if text else math.nan
        except ValueError:
            raise ConfigError(f"{where}: column {column!r} is {text!r}, not a number") from None
    if not 0 < row["weights_remaining_percent"] <= 100:
        raise ConfigError(f"{where}: weights_remaining_percent {row['weights_remaining_percent']!r} is not a "
                          "percent in (0, 100]")
    return row


def check_transfer_rows(transfer_dir: Path, rows: list[dict]) -> None:
    """ConfigError unless `rows` (read from `transfer_dir`'s transfer.csv) agree with the sealed results they were
    written from: each source directory's transfer jobs and the target's own run (transfer.json names it), all
    checked as every command checks a run's finished jobs (IntegrityError naming damaged files). A changed number
    or a lost row of a transfer job is refused."""
    csv_path = transfer_dir / "transfer.csv"
    records: dict[tuple[str, int, int, str], dict] = {}
    for source_dir in sorted(path for path in transfer_dir.iterdir() if (path / SOURCE_RECORD).is_file()):
        for job_dir, record in read_finished_jobs(source_dir).items():
            records[(source_dir.name, *job_key_of(job_dir))] = record
    sources = {key[0] for key in records}
    try:
        target_run = Path(read_json(transfer_dir / "transfer.json")["target_run"])
    except (OSError, ValueError, KeyError, TypeError):
        target_run = None
    if target_run is not None and target_run.is_dir():
        for job_dir, record in read_finished_jobs(target_run).items():
            trial, level, variant = job_key_of(job_dir)
            if variant in (DENSE, "iterative_reset"):
                records[(target_run.name, trial, level, DENSE if variant == DENSE else TARGET_FOUND)] = record
    seen = set()
    for row in rows:
        key = (row["source"], row["trial"], row["level"], row["variant"])
        seen.add(key)
        record = records.get(key)
        if record is None:
            continue
        for column in TRANSFER_INT_COLUMNS[2:] + TRANSFER_FLOAT_COLUMNS:
            expected, value = record.get(column), row[column]
            missing = [item is None or isinstance(item, float) and math.isnan(item) for item in (expected, value)]
            if any(missing) and not all(missing) or not any(missing) and float(value) != float(expected):
                raise ConfigError(f"{csv_path}: {column} of {row['source']} trial {row['trial']} level "
                                  f"{row['level']} {row['variant']} is {value!r}, its sealed result.json says "
                                  f"{expected!r} (edited or damaged); rerun `ticketlab transfer` to rewrite it")
    lost = sorted(key for key in records if key[0] in sources and key not in seen)
    if lost:
        raise ConfigError(f"{csv_path}: no row for the finished transfer job {lost[0][0]} trial {lost[0][1]} level "
                          f"{lost[0][2]} {lost[0][3]} (rows lost); rerun `ticketlab transfer` to rewrite it")


def transfer_matrix(rows: list[dict], at_percent: float, metric: str = "early_stop_test_accuracy") -> dict:
    """Source-by-target matrix of mean `metric` at the level nearest `at_percent` weights remaining (nearest on
    a log scale, per (source, target) pair). Sources and targets are data labels ('fashion_mnist 0-4 adam');
    the target's own tickets sit where the source is the target. Returns {"sources", "targets", "cells"} with
    cells[(source, target)] = {"value", "weights_remaining_percent", "trials"}."""
    if not (isinstance(at_percent, (int, float)) and 0 < at_percent <= 100):
        raise ConfigError(f"--at {at_percent!r} must be a percent in (0, 100]")
    groups: dict[tuple[str, str], dict[int, list[dict]]] = {}
    for row in rows:
        if row["variant"] in (TRANSFERRED, TARGET_FOUND) and row["level"] > 0:
            groups.setdefault((row["source_data"], row["target"]), {}).setdefault(row["level"], []).append(row)
    cells = {}
    for pair, by_level in groups.items():
        def distance(level: int) -> float:
            mean = sum(r["weights_remaining_percent"] for r in by_level[level]) / len(by_level[level])
            return abs(math.log(mean / at_percent))

        level = min(by_level, key=distance)
        chosen = by_level[level]
        cells[pair] = {"value": sum(r[metric] for r in chosen) / len(chosen),
                       "weights_remaining_percent": sum(r["weights_remaining_percent"] for r in chosen) / len(chosen),
                       "trials": len(chosen), "level": level}
    sources = sorted({pair[0] for pair in cells})
    targets = sorted({pair[1] for pair in cells})
    return {"sources": sources, "targets": targets, "cells": cells}


def write_matrix_csv(path: Path, matrix: dict) -> Path:
    """One row per source, one column per target (mean accuracy; empty where that pair was not run)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source \\ target", *matrix["targets"]])
    for source in matrix["sources"]:
        cells = [matrix["cells"].get((source, target)) for target in matrix["targets"]]
        writer.writerow([source, *("" if cell is None else f"{cell['value']:.4f}" for cell in cells)])
    atomic_write_bytes(Path(path), buffer.getvalue().encode())
    return Path(path)
