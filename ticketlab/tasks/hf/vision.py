"""A Hugging Face image classifier (ViT, DeiT, ConvNeXt, ...: any `AutoModelForImageClassification` saved with
`save_pretrained`) as a network of the classification task.

From the command line: `--model.name hf_image --model.pretrained_dir DIR` (the directory is loaded, never
downloaded; θ0 is its weights, a head of another class count is drawn from the trial seed). From Python:
`ImageClassifier(path)` is an nn.Module whose forward takes images and returns logits, so `find_tickets(config,
model=..., data=...)` finds its tickets like any vision network's."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.tasks.hf.pretrained import (
    checked_model_directory,
    initialize_new_head,
    load_pretrained,
    reinitialize,
    saved_num_labels,
    seeded,
)

SETTING = "model.pretrained_dir"


class ImageClassifier(nn.Module):
    """`AutoModelForImageClassification.from_pretrained(path)` whose forward takes images [N, C, H, W] and returns
    the logits [N, classes] (the transformers model returns an output object). The transformers model's modules are
    its own children, so its parameter names are the transformers model's own (its `state_dict()`: `vit...`,
    `classifier.weight`): masks, tickets and exports load into it with `load_state_dict` as they are. `num_labels`
    other than the checkpoint's gives it a new head of that size (fine-tuning on other classes), drawn by
    `draw_initial`.

    `draw_initial(seed)` / `draw_random(seed)` are the classification task's θ0 (θ_pre, the new head from `seed`)
    and its random reinitialization control (the model's own `_init_weights` on every module, from `seed`)."""

    def __init__(self, path: str | Path, num_labels: int | None = None) -> None:
        super().__init__()
        path = checked_model_directory(path, SETTING)
        overrides = {}
        if num_labels is not None and num_labels != saved_num_labels(json.loads((path / "config.json").read_text())):
            overrides = {"num_labels": num_labels, "ignore_mismatched_sizes": True}
        with seeded(0):  # transformers draws a new head from the global generator; `draw_initial` redraws it
            network, self.new_parameters = load_pretrained(path, "AutoModelForImageClassification", SETTING,
                                                           resize_head=bool(overrides), **overrides)
        object.__setattr__(self, "network", network)  # not a submodule: its children are ours, under their names
        for name, child in network.named_children():
            self.add_module(name, child)
        self.image_shape = _image_shape(network.config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values=images).logits

    def train(self, mode: bool = True) -> ImageClassifier:
        self.network.training = mode  # the children follow through nn.Module.train
        return super().train(mode)

    def draw_initial(self, seed: int) -> ImageClassifier:
        initialize_new_head(self.network, self.new_parameters, seed)
        return self

    def draw_random(self, seed: int) -> ImageClassifier:
        reinitialize(self.network, seed)
        return self


def image_classifier_for(path: str, input_shape: tuple[int, ...], num_classes: int) -> ImageClassifier:
    """The model of `--model.name hf_image`: the directory's classifier with `num_classes` outputs, checked to take
    inputs of `input_shape` (ConfigError in one line naming the shape it takes)."""
    model = ImageClassifier(path, num_labels=num_classes)
    wanted = model.image_shape
    if len(input_shape) != 3 or (wanted is not None and tuple(input_shape) != wanted):
        shown = "x".join(map(str, wanted)) if wanted else "[C, H, W]"
        raise ConfigError(f"{SETTING} {path!r} takes {shown} images, the data gives inputs of shape "
                          f"{'x'.join(map(str, input_shape))}: set data.image_size and data.channels to match")
    return model


def check_takes(model: ImageClassifier, path: str, input_shape: tuple[int, ...]) -> None:
    """What the config cannot tell (a convolutional model's channels), once before a run: one forward of a blank
    image; ConfigError in one line if it fails."""
    try:
        with torch.no_grad(), seeded(0):
            model.eval()(torch.zeros(1, *input_shape))
    except (RuntimeError, ValueError) as error:
        raise ConfigError(f"{SETTING} {path!r} cannot take inputs of shape {'x'.join(map(str, input_shape))}: "
                          f"{str(error).splitlines()[0]}") from None
    model.train()


def _image_shape(config) -> tuple[int, int, int] | None:
    """(channels, size, size) a model with a fixed input size takes (ViT's position embeddings), else None."""
    size, channels = getattr(config, "image_size", None), getattr(config, "num_channels", None)
    if not (isinstance(size, int) and isinstance(channels, int)) or config.model_type not in FIXED_SIZE_MODELS:
        return None
    return channels, size, size


# model types whose position embeddings fix the image size (the others, convolutional, take any size)
FIXED_SIZE_MODELS = frozenset({"vit", "deit", "beit", "data2vec-vision", "dinov2", "vit_msn", "vit_mae"})
