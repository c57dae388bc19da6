"""Image (and any tensor) classification as a task: today's data, models, training loop and populations.

Its code lives in `ticketlab.data`, `ticketlab.models` and `ticketlab.training`; this module only fills in the
`Task` interface, so the lottery layer can treat it like every other task.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.config import HF_IMAGE_MODEL, DataConfig, ExperimentConfig, TrainConfig
from ticketlab.data import FOLDER_DATASETS, DataSplits, load_dataset
from ticketlab.models import build_model, initialize, load_torchvision_weights, set_noise_seed
from ticketlab.seeds import derive_seed
from ticketlab.tasks.base import Task
from ticketlab.tasks.metrics import METRICS, Metric
from ticketlab.training.batches import (
    data_device,
    first_inputs,
    iterations_per_epoch,
    num_train_examples,
    training_batches,
)
from ticketlab.training.evaluation import evaluate_split
from ticketlab.training.loop import train_model
from ticketlab.training.population import can_vectorize, prefers_population


def _load_data(config: DataConfig) -> DataSplits:
    return load_dataset(config)


def _build_model(config: ExperimentConfig, data: DataSplits) -> nn.Module:
    return _model_for_shapes(config, data.input_shape, data.num_classes)


def _model_for_shapes(config: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if config.model.name == HF_IMAGE_MODEL:  # transformers only when asked for
        from ticketlab.tasks.hf.vision import image_classifier_for

        return image_classifier_for(config.model.pretrained_dir, input_shape, num_classes)
    return build_model(
        config.model.name, input_shape, num_classes, hidden=config.model.hidden,
        width=config.model.width, depth=config.model.depth, dropout=config.model.dropout,
    )


def _train_examples(data) -> int | None:
    """The in-memory training split's size; None for image folders (they are streamed)."""
    return len(data.x_train) if isinstance(data, DataSplits) else None


def _labelled_examples(data, split: str, count: int | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(inputs, labels) of the first `count` examples of an in-memory split (None: all; views, not copies);
    None for image folders (they are streamed)."""
    if not isinstance(data, DataSplits):
        return None
    inputs, labels = {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
                      "test": (data.x_test, data.y_test)}[split]
    return inputs[:count], labels[:count]


def _pretrained_start(model: nn.Module, config: ExperimentConfig) -> nn.Module:
    """`model` with the weights of `model.weights` (a .safetensors state_dict by parameter name), if set."""
    return load_torchvision_weights(model, config.model.weights) if config.model.weights else model


def _load_experiment_data(config: ExperimentConfig):
    """The data; with `model.weights`, the file is checked against the network first (DataError in one line for
    a missing file, other names, or a head of another class count), before anything trains."""
    data = load_dataset(config.data)
    if config.model.weights or config.model.name == HF_IMAGE_MODEL:
        model = _pretrained_start(_build_model(config, data), config)
        if config.model.name == HF_IMAGE_MODEL:
            from ticketlab.tasks.hf.vision import check_takes

            check_takes(model, config.model.pretrained_dir, data.input_shape)
    return data


def _initialize(model: nn.Module, config: ExperimentConfig, seed: int) -> nn.Module:
    """θ0 from `seed`: drawn by model.init, or, for a pre-trained network that draws its own (`draw_initial`: a
    Hugging Face classifier), its weights with the new head drawn from `seed`."""
    own = getattr(model, "draw_initial", None)
    return own(seed) if own is not None else initialize(model, config.model.init, seed)


def _reinitialize(model: nn.Module, config: ExperimentConfig, seed: int) -> nn.Module:
    """The random reinitialization control: a network whose θ0 is pre-trained (`draw_random`) draws every weight
    from `seed`; the others were drawn by `_initialize` already."""
    own = getattr(model, "draw_random", None)
    return own(seed) if own is not None else model


def _evaluate(model: nn.Module, data, split: str) -> dict[str, float]:
    loss, accuracy = evaluate_split(model, data, split)
    return {"loss": loss, "accuracy": accuracy}


def _bind_run(data, run_dir):
    """Image folders: record the dataset's file listing in RUN_DIR/image_folder.json at the first start, and
    refuse (ConfigError) to continue the run on a folder whose files differ."""
    if not getattr(data, "streamed", False):
        return data
    from pathlib import Path

    from ticketlab.errors import ConfigError
    from ticketlab.store import read_json_record, write_json

    path = Path(run_dir) / "image_folder.json"
    listing = {"root": str(data.root), "fingerprint": data.fingerprint(), "classes": len(data.classes),
               "train": data.num_train, "val": len(data.val[0]), "test": len(data.test[0])}
    if not path.exists():
        write_json(path, listing)
        return data
    stored = read_json_record(path, "it records the image folder this run was trained on: delete the file and "
                                    "run the same command again to have it rewritten from --data-dir")
    if stored.get("fingerprint") != listing["fingerprint"]:
        raise ConfigError(f"--data-dir {data.root} holds other files than the image folder this run was trained on "
                          f"({stored.get('root')}: {stored.get('train')} train / {stored.get('test')} test images); "
                          "use that folder, or a new --root")
    return data


def _metric(config: ExperimentConfig) -> Metric:
    return METRICS["accuracy"]


def _steps_per_epoch(data, config: TrainConfig) -> int:
    return iterations_per_epoch(num_train_examples(data), config.batch_size)


def _stackable(model: nn.Module, device: torch.device, population: int | None) -> bool:
    """Populations: never with `population` 1, only for stackable models, and with the automatic size (None)
    only where stacking pays off on this device."""
    return population != 1 and can_vectorize(model) and (population is not None or prefers_population(model, device))


def per_step_randomness(config: ExperimentConfig, model: nn.Module) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
    """The loop's per-step hook: seeds the model's dropout and augments the batch, both from the step's seed.

    None when the config has neither (the loop then does no per-step work).
    """
    has_dropout = set_noise_seed(model, None)
    # image folders augment each image as they decode it (random-resized crop and flip), not the batch
    pad_crop = config.data.augment and config.data.name not in FOLDER_DATASETS
    if not (pad_crop or has_dropout):
        return None
    from ticketlab.data.augment import pad_crop_flip

    def hook(batch: torch.Tensor, seed: int) -> torch.Tensor:
        if has_dropout:
            set_noise_seed(model, derive_seed(seed, "dropout"))
        return pad_crop_flip(batch, seed) if pad_crop else batch

    return hook


def score_losses(model: nn.Module, data: DataSplits, config: TrainConfig, seed: int, batches: int,
                 first_batch: int = 0, temperature: float = 1.0):
    """Cross-entropy of `model`'s logits divided by `temperature` on `batches` training batches of
    `config.batch_size`, drawn in the order the training loop would draw them from data seed `seed` at steps
    `first_batch`, `first_batch + 1`, ... (dropout
    seeded per batch, no augmentation)."""
    has_dropout = set_noise_seed(model, None)
    batches_drawn = training_batches(data, first_batch, first_batch + batches, config.batch_size, seed)
    for index, (inputs, labels) in enumerate(batches_drawn, start=first_batch):
        if has_dropout:
            set_noise_seed(model, derive_seed(seed, "score_dropout", index))
        yield F.cross_entropy(model(inputs) / temperature, labels)


def ones_input(data) -> torch.Tensor:
    return torch.ones((1, *data.input_shape), device=data_device(data))


TASK = Task(
    name="classification",
    load_data=_load_data,
    build_model=_build_model,
    initialize=_initialize,
    train=train_model,
    evaluate=_evaluate,
    metric=_metric,
    steps_per_epoch=_steps_per_epoch,
    stackable=_stackable,
    per_step_hook=per_step_randomness,
    bind_run=_bind_run,
    load_experiment_data=_load_experiment_data,
    pretrained_start=_pretrained_start,
    reinitialize=_reinitialize,
    score_losses=score_losses,
    ones_input=ones_input,
    example_inputs=first_inputs,
    transfers=True,
    train_examples=_train_examples,
    labelled_examples=_labelled_examples,
    model_for_shapes=_model_for_shapes,
    data_parallel=True,
    stack_refusal="not a Flatten/Linear/ReLU stack or a built-in conv net without dropout",
)
