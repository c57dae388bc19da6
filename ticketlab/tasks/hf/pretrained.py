"""Pre-trained models from a local directory: loading (never a download), θ0 = θ_pre with the head the checkpoint
lacks drawn from the trial seed, and the random reinitialization control (the model's own `_init_weights`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import nn

from ticketlab.errors import ConfigError

INSTALL_HINT = "pip install 'ticketlab[hf]'"


def transformers_module():
    """The transformers package, quiet (no load reports, no progress bars); ConfigError naming the extra if it is
    not installed."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"the Hugging Face tasks need transformers, which is not installed: {INSTALL_HINT}") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def model_directory(settings, section: str) -> Path:
    """The settings' model directory, checked to hold a model (config.json with a model_type); ConfigError else."""
    if settings.model_dir is None:
        raise ConfigError(f"{section}.model_dir is unset: name a local directory written by save_pretrained")
    return checked_model_directory(settings.model_dir, f"{section}.model_dir")


def checked_model_directory(path: str | Path, setting: str) -> Path:
    """`path` (the value of `setting`, for messages), checked to hold a Hugging Face model: a config.json that names
    a model_type; ConfigError in one line else."""
    path = Path(path).expanduser()
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{setting} {str(path)!r} holds no Hugging Face model (no config.json): name a "
                          "directory written by save_pretrained")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    if not model_type:
        raise ConfigError(f"{setting} {str(path)!r} holds no Hugging Face model (its config.json names no "
                          "model_type)")
    return path


def saved_num_labels(saved: dict) -> int | None:
    """The number of labels of the head a saved config.json (`saved`, parsed) describes: its num_labels or the size
    of its id2label; None if it states neither."""
    return saved.get("num_labels") or len(saved.get("id2label") or {}) or None


def load_tokenizer(path: Path, section: str):
    transformers = transformers_module()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{section}.model_dir {str(path)!r} holds no tokenizer transformers can load: "
                          f"{str(error).splitlines()[0]}") from None


def load_pretrained(path: Path, auto_class: str, setting: str, *, resize_head: bool = False,
                    **overrides) -> tuple[nn.Module, frozenset[str]]:
    """(model of `auto_class` (e.g. 'AutoModelForSequenceClassification') from `path`, names of the parameters the
    checkpoint did not hold: the new head, drawn later from the trial seed); `setting` names the path in messages.
    `resize_head`: tensors of another shape than the checkpoint's (a head of another class count,
    `ignore_mismatched_sizes`) are new too."""
    transformers = transformers_module()
    try:
        model, info = getattr(transformers, auto_class).from_pretrained(
            str(path), local_files_only=True, output_loading_info=True, **overrides)
    except (OSError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{setting} {str(path)!r}: transformers cannot load it as {auto_class}: "
                          f"{str(error).splitlines()[0]}") from None
    mismatched = frozenset(key[0] if isinstance(key, (tuple, list)) else str(key)
                           for key in info.get("mismatched_keys") or ())
    if resize_head:
        return model, frozenset(info.get("missing_keys", ())) | mismatched
    if mismatched:
        raise ConfigError(f"{setting} {str(path)!r}: tensors of another shape than the model's: "
                          f"{', '.join(sorted(map(str, info['mismatched_keys']))[:3])}")
    return model, frozenset(info.get("missing_keys", ()))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """Draw from torch's generator (CPU and `device`) seeded with `seed`, leaving the caller's state as it was:
    transformers' `_init_weights` and its dropout read the global generator."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(seed)
        yield


def initialize_new_head(model: nn.Module, new_names: frozenset[str], seed: int) -> nn.Module:
    """θ0 of a trial from a model as `load_pretrained` returned it: every tensor the checkpoint held stays θ_pre;
    the modules owning the others (the new head) are re-drawn by the model's own `_init_weights` from `seed`."""
    owners = {name.rsplit(".", 1)[0] for name in new_names}
    with seeded(seed):
        for name, module in model.named_modules():
            if name in owners:
                _draw(model, module)
    model.tie_weights()
    return model


def _draw(model: nn.Module, module: nn.Module) -> None:
    """`model._init_weights(module)`, after clearing the flags by which transformers (5.x) skips the tensors it
    loaded or already initialized."""
    for tensor in (module, *module.parameters(recurse=False), *module.buffers(recurse=False)):
        if getattr(tensor, "_is_hf_initialized", False):
            tensor._is_hf_initialized = False
    model._init_weights(module)


def reinitialize(model: nn.Module, seed: int) -> nn.Module:
    """Fresh random weights for the random-reinitialization control: the model's own `_init_weights` on every
    module, from `seed` (not the pre-trained weights: Chen et al.'s random reinitialization)."""
    with seeded(seed):
        for module in model.modules():
            _draw(model, module)
    model.tie_weights()
    return model
