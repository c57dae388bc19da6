"""Which masked Linear layers of a job run on sparse kernels (`train.kernels`), and the calibration behind 'auto'.

'dense': none. 'sparse': every nn.Linear whose weight the mask prunes. 'auto': those where sparse kernels measured
faster on this machine for the layer's shape, density and batch size: a quick timing (dense and sparse forward +
backward, interleaved, best of five rounds; about 0.1 s per layer) whose verdict is cached under the
ticketlab cache root (`$TICKETLAB_CACHE` or ~/.cache/ticketlab, kernels/), keyed by machine, torch version and
thread count. Sparse and dense kernels round differently, so a job records its choice in its directory
(kernels.json) and a resumed job reuses it: the calibration never changes a run halfway.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.data.mnist import resolve_cache_root
from ticketlab.errors import ConfigError
from ticketlab.store import read_json, write_json
from ticketlab.training.sparse_linear import MaskLayout, masked_linear_names, sparse_linear

CHOICE_FILE = "kernels.json"
CALIBRATION_ROUNDS = 5
CALIBRATION_SECONDS = 0.01  # per round and kernel: enough calls to time a layer above timer noise


def sparse_layer_names(model: nn.Module, masks: dict[str, torch.Tensor], kernels: str, batch_size: int,
                       job_dir: Path | None = None, cache_root: Path | None = None) -> list[str]:
    """The module names of `model`'s masked nn.Linear layers that run on sparse kernels under `kernels`
    ('dense', 'sparse' or 'auto'; 'compact' shrinks the network instead: `ticketlab.lottery.compact_training`);
    with `job_dir`, the choice is read from (resume) or written to its kernels.json."""
    if kernels in ("dense", "compact"):
        return []
    _check_device(kernels, masks)
    recorded = _recorded_choice(job_dir, kernels)
    if recorded is not None:
        return recorded
    candidates = masked_linear_names(model, masks)
    if kernels == "auto":
        modules = dict(model.named_modules())
        candidates = [name for name in candidates
                      if sparse_wins(modules[name].weight.shape, masks[f"{name}.weight"], batch_size, cache_root)]
    if job_dir is not None:
        write_json(job_dir / CHOICE_FILE, {"kernels": kernels, "sparse_layers": candidates})
    return candidates


def _check_device(kernels: str, masks: dict[str, torch.Tensor]) -> None:
    """ConfigError unless the masks (the tensors the kernels run on) are on a device with sparse CSR kernels."""
    device = next(iter(masks.values())).device if masks else torch.device("cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.kernels {kernels!r} needs a CPU or CUDA device (torch has no sparse CSR kernels on "
                          f"{device.type}); use train.kernels dense there")


def _recorded_choice(job_dir: Path | None, kernels: str) -> list[str] | None:
    path = job_dir / CHOICE_FILE if job_dir is not None else None
    if path is None or not path.exists():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("kernels") != kernels:
        return None
    layers = record.get("sparse_layers")
    return layers if isinstance(layers, list) and all(isinstance(name, str) for name in layers) else None


def population_sparse_layer_names(model: nn.Module, masks: torch.Tensor | dict, stacked_masks: dict[str, torch.Tensor],
                                  kernels: str, batch_size: int, job_dirs: list[Path | None],
                                  cache_root: Path | None = None) -> list[str]:
    """`sparse_layer_names` for a Linear/ReLU population: the masked nn.Linear layers of the members' `model` that
    run on block-diagonal sparse kernels (`population.sparse_stack`). `masks`: one member's mask names;
    `stacked_masks`: name -> the stack's [K, out, in] masks (their density and K decide 'auto'). The members'
    kernels.json hold the choice; a population whose members recorded one choice resumes with it."""
    if kernels in ("dense", "compact"):
        return []
    _check_device(kernels, stacked_masks)
    recorded = [_recorded_choice(job_dir, kernels) for job_dir in job_dirs]
    known = [choice for choice in recorded if choice is not None]
    if known and all(choice == known[0] for choice in known):
        chosen = known[0]
    else:
        chosen = masked_linear_names(model, masks)
        if kernels == "auto":
            chosen = [name for name in chosen
                      if population_sparse_wins(stacked_masks[f"{name}.weight"], batch_size, cache_root)]
    for job_dir, choice in zip(job_dirs, recorded):
        if job_dir is not None and choice != chosen:
            write_json(job_dir / CHOICE_FILE, {"kernels": kernels, "sparse_layers": chosen})
    return chosen


def population_sparse_wins(stacked_mask: torch.Tensor, batch_size: int, cache_root: Path | None = None) -> bool:
    """Whether a population's [K, out, in] layer under `stacked_mask` trains faster on block-diagonal sparse
    kernels than on the dense `bmm` ones on this machine: the cached verdict, else a calibration (cached)."""
    count, out_features, in_features = stacked_mask.shape
    density = float((stacked_mask != 0).float().mean())
    key = f"population{count}-{out_features}x{in_features}-b{batch_size}-d{density:.4f}"
    return _cached_verdict(key, cache_root, lambda: calibrate_population(stacked_mask, batch_size))


def sparse_wins(shape, mask: torch.Tensor, batch_size: int, cache_root: Path | None = None) -> bool:
    """Whether sparse kernels train an [out, in] layer under `mask` at `batch_size` faster than dense ones on this
    machine: the cached verdict, else a calibration (cached)."""
    density = float((mask != 0).float().mean())
    key = f"{shape[0]}x{shape[1]}-b{batch_size}-d{density:.4f}"
    return _cached_verdict(key, cache_root, lambda: calibrate(tuple(shape), mask, batch_size))


def _cached_verdict(key: str, cache_root: Path | None, measure) -> bool:
    """Whether sparse beat dense for `key`: the machine's cached timing, else `measure()` -> (dense_s, sparse_s),
    then cached."""
    path = resolve_cache_root(cache_root) / "kernels" / f"{machine_key()}.json"
    cache = _read_cache(path)
    if key not in cache:
        dense_s, sparse_s = measure()
        cache = {**_read_cache(path), key: {"dense_s": dense_s, "sparse_s": sparse_s}}
        try:
            write_json(path, cache)
        except OSError:  # a read-only cache: the verdict still holds for this run
            pass
    return cache[key]["sparse_s"] < cache[key]["dense_s"]


def machine_key() -> str:
    """What a calibration depends on: processor, torch version, threads."""
    processor = (platform.processor() or platform.machine() or "cpu").replace(" ", "_").replace("/", "_")
    return f"{processor}-{os.cpu_count()}cpu-torch{torch.__version__}-threads{torch.get_num_threads()}"


def _read_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    valid = {key: value for key, value in cache.items() if isinstance(value, dict)
             and all(isinstance(value.get(name), float) for name in ("dense_s", "sparse_s"))} \
        if isinstance(cache, dict) else {}
    return valid


def calibrate(shape: tuple[int, int], mask: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(dense, sparse) best seconds of one forward + backward of an [out, in] layer under `mask` at `batch_size`
    (random values; the timing does not depend on them)."""
    generator = torch.Generator().manual_seed(0)
    mask = mask.detach().float().cpu()
    weight = (torch.randn(shape, generator=generator) * mask).requires_grad_()
    bias = torch.zeros(shape[0], requires_grad=True)
    inputs = torch.randn(batch_size, shape[1], generator=generator).requires_grad_()
    grad_outputs = torch.randn(batch_size, shape[0], generator=generator)
    layout = MaskLayout(mask)
    calls = {"dense": lambda: F.linear(inputs, weight, bias).backward(grad_outputs),
             "sparse": lambda: sparse_linear(inputs, weight, bias, layout).backward(grad_outputs)}
    return _best_of_rounds(calls)


def calibrate_population(stacked_mask: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(dense, sparse) best seconds of one forward + both gradients of a population's [K, out, in] layer under
    `stacked_mask` at `batch_size`: the dense `bmm` kernels against the block-diagonal sparse ones."""
    from ticketlab.training.population.sparse_stack import BlockDiagonalLayout, feature_major

    generator = torch.Generator().manual_seed(0)
    masks = stacked_mask.detach().float().cpu()
    count, out_features, in_features = masks.shape
    weights = torch.randn(masks.shape, generator=generator) * masks
    bias = torch.zeros(count, out_features)
    inputs = torch.randn(count, batch_size, in_features, generator=generator)
    upstream = torch.randn(count, batch_size, out_features, generator=generator)
    grads = torch.empty_like(weights)
    layout = BlockDiagonalLayout(masks)
    stacked_upstream = feature_major(upstream)

    def dense():
        torch.baddbmm(bias.unsqueeze(1), inputs, weights.transpose(1, 2))
        torch.bmm(upstream.transpose(1, 2), inputs, out=grads)
        torch.bmm(upstream, weights)

    def sparse():  # with the one copy into the sparse kernels' layout a layer after a dense one makes
        stacked_inputs = feature_major(inputs)
        layout.forward(weights, bias, stacked_inputs)
        layout.weight_gradient(stacked_upstream, stacked_inputs, grads)
        layout.input_gradient(weights, stacked_upstream)

    return _best_of_rounds({"dense": dense, "sparse": sparse})


def _best_of_rounds(calls: dict) -> tuple[float, float]:
    """(dense, sparse): the best seconds per call over CALIBRATION_ROUNDS interleaved rounds."""
    # one thread: this process's CPU time, which the other work on a shared machine disturbs far less than the
    # wall clock; several threads: the wall clock (CPU time would count a parallel kernel's threads as a cost)
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        start = time.perf_counter()
        calls["dense"]()
        calls["sparse"]()
        repeats = max(1, min(1000, round(CALIBRATION_SECONDS / max(time.perf_counter() - start, 1e-6))))
        best = {name: math.inf for name in calls}
        for _ in range(CALIBRATION_ROUNDS):
            for name, call in calls.items():
                start = clock()
                for _ in range(repeats):
                    call()
                best[name] = min(best[name], (clock() - start) / repeats)
    return best["dense"], best["sparse"]
