"""A Hugging Face image classifier (ViT, DeiT, ConvNeXt, ...: any `AutoModelForImageClassification` saved with
`save_pretrained`) as a network of the classification task: `ImageClassifier(path)` loads it from the local
directory (never a download) and returns the logits for a batch of images, so `find_tickets(config, model=...,
data=...)` finds its tickets like any vision network's. Its weights are the pre-trained ones; save them
(`save_file(network.state_dict(), ...)`) and name the file in `model.weights` to make θ_pre every trial's θ0."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.tasks.hf.pretrained import transformers_module


class ImageClassifier(nn.Module):
    """`AutoModelForImageClassification.from_pretrained(path)` whose forward takes images [N, C, H, W] and returns
    the logits [N, classes] (the transformers model returns an output object). Its parameters are the model's,
    under `network.`; `num_labels` replaces the head with a new one of that size (fine-tuning on other classes)."""

    def __init__(self, path: str | Path, num_labels: int | None = None) -> None:
        super().__init__()
        transformers = transformers_module()
        overrides = {} if num_labels is None else {"num_labels": num_labels, "ignore_mismatched_sizes": True}
        try:
            self.network = transformers.AutoModelForImageClassification.from_pretrained(
                str(Path(path).expanduser()), local_files_only=True, **overrides)
        except (OSError, ValueError, RuntimeError) as error:
            raise ConfigError(f"{str(path)!r} holds no image classifier transformers can load: "
                              f"{str(error).splitlines()[0]}") from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values=images).logits
