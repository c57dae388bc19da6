"""Image datasets too large for memory, in the ImageFolder layout: ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg.

This is how ImageNet is usually prepared (one folder per synset; the validation images sorted into class folders),
and how any folder of labelled photos can be used. Images are decoded with Pillow in DataLoader worker processes,
a batch at a time, never held in memory as a whole.

- Classes are the sorted names of train/'s subfolders (torchvision's ImageFolder convention), so label k means the
  same class in ticketlab and in a torchvision checkpoint; val/ must hold the same class folders.
- Splits: `data.validation_size` training images (a fixed seeded choice, not the last ones: files are sorted by
  class) are held out for early stopping; val/ is the test split, as in the lottery-ticket ImageNet papers.
- Training transform (`data.augment` true): the standard random-resized crop (scale 0.08-1, aspect ratio 3/4-4/3,
  10 attempts, then a centre crop) to `data.image_size` (default 224) and a horizontal flip with p = 1/2;
  evaluation transform: the shorter side resized to size/0.875 (256 for 224) and a centre crop. Both normalize with
  the ImageNet channel mean and std. Every random number comes from the seed of the example's step and its place
  in the batch, so batches do not depend on the number of workers and a resumed run repeats them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable, Iterator, Sequence

import numpy as np
import torch

from ticketlab.errors import ConfigError, DataError
from ticketlab.seeds import derive_seed

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224
EVAL_RESIZE_RATIO = 0.875  # centre crop 224 of 256
TRAIN_EVAL_LIMIT = 10_000  # "train" evaluations (final train accuracy) use this many training images at most
EVAL_BATCH_IMAGES = 256


def scan_image_folder(root: Path, split: str, classes: Sequence[str] | None = None) -> tuple[list[str], list[Path], list[int]]:
    """(class names, image paths, labels) of ROOT/<split>, files sorted by class then name.

    DataError (one line) when the folder is missing, holds no class folders, a class folder holds no image, or
    `classes` (the train split's) differ from this split's."""
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{folder} is not a directory: an image folder needs {root}/train/<class>/*.jpg and "
                        f"{root}/val/<class>/*.jpg")
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not found:
        raise DataError(f"{folder} holds no class folders (expected {folder}/<class>/*.jpg)")
    if classes is not None and found != list(classes):
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise DataError(f"{folder} has other class folders than train/: missing {missing[:5]}, extra {extra[:5]}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(found):
        images = sorted(entry.name for entry in os.scandir(folder / name)
                        if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS))
        if not images:
            raise DataError(f"{folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(folder / name / image for image in images)
        labels.extend([label] * len(images))
    return found, paths, labels


def _pil():
    try:
        from PIL import Image
    except ImportError:  # matplotlib depends on Pillow, so this is rare
        raise ConfigError("image folders need Pillow: pip install pillow") from None
    return Image


def random_resized_box(width: int, height: int, rng: np.random.Generator,
                       scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)):
    """The (left, top, right, bottom) box of a random-resized crop (Szegedy et al. 2015, as in torchvision): area a
    uniform fraction of the image in `scale`, log-uniform aspect ratio in `ratio`; after 10 misses, a centre crop
    with the aspect ratio clamped to `ratio`."""
    area = width * height
    log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(*log_ratio)))
        crop_w, crop_h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left = int(rng.integers(0, width - crop_w + 1))
            top = int(rng.integers(0, height - crop_h + 1))
            return left, top, left + crop_w, top + crop_h
    aspect = width / height
    if aspect < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        crop_w, crop_h = int(round(height * ratio[1])), height
    else:
        crop_w, crop_h = width, height
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def center_box(width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The evaluation transform's geometry: ((resized width, height) with the shorter side size/0.875, the centre
    size x size crop box in the resized image)."""
    short = int(size / EVAL_RESIZE_RATIO)
    if width <= height:
        resized = (short, int(short * height / width))
    else:
        resized = (int(short * width / height), short)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    return resized, (left, top, left + size, top + size)


def to_normalized_tensor(image) -> torch.Tensor:
    """An RGB PIL image as a [3, H, W] float32 tensor, scaled to [0, 1] and normalized with the ImageNet mean/std."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(IMAGENET_MEAN, dtype=np.float32)) / np.asarray(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def load_image(path: Path, size: int, seed: int | None):
    """Decode `path` and transform it: the training transform with `seed`, the evaluation transform with None."""
    Image = _pil()
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path} is not a readable image ({error})") from None
    if seed is None:
        resized, box = center_box(image.width, image.height, size)
        return image.resize(resized, Image.BILINEAR).crop(box)
    rng = np.random.default_rng(seed)
    box = random_resized_box(image.width, image.height, rng)
    crop = image.resize((size, size), Image.BILINEAR, box=box)
    return crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


class _Images(torch.utils.data.Dataset):
    """Items (index, seed or None) -> (normalized image tensor, label); picklable for worker processes."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], size: int):
        self.paths, self.labels, self.size = list(paths), list(labels), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int | None]):
        index, seed = item
        return to_normalized_tensor(load_image(self.paths[index], self.size, seed)), self.labels[index]


@dataclass
class FolderData:
    """An image folder's splits as lists of files: what the training loop reads batch by batch.

    The loop draws training batches with `train_batches` and evaluates a split with `evaluate_batches`;
    `num_train`, `input_shape`, `num_classes` and `device` stand where in-memory splits have tensors.
    """

    root: Path
    classes: list[str]
    train: tuple[list[Path], list[int]]
    val: tuple[list[Path], list[int]]
    test: tuple[list[Path], list[int]]
    image_size: int = DEFAULT_IMAGE_SIZE
    augment: bool = True
    loader_workers: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    streamed: ClassVar[bool] = True  # read from disk batch by batch: jobs train one at a time, never stacked

    @property
    def num_train(self) -> int:
        return len(self.train[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def to(self, device) -> "FolderData":
        """The same files, with batches delivered to `device`."""
        return FolderData(**{**self.__dict__, "device": torch.device(device)})

    def fingerprint(self) -> str:
        """sha256 of every file's split, relative path and size: a changed dataset changes it."""
        digest = hashlib.sha256()
        for split, (paths, labels) in (("train", self.train), ("val", self.val), ("test", self.test)):
            for path, label in zip(paths, labels):
                digest.update(f"{split}\0{path.relative_to(self.root)}\0{label}\0{path.stat().st_size}\n".encode())
        return digest.hexdigest()

    def _loader(self, split: str, items: Iterable[list[tuple[int, int | None]]]) -> torch.utils.data.DataLoader:
        paths, labels = getattr(self, split)
        return torch.utils.data.DataLoader(
            _Images(paths, labels, self.image_size), batch_sampler=items, num_workers=self.loader_workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.loader_workers else None,
        )

    def train_batches(self, steps: Iterable[tuple[torch.Tensor, int, int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, labels) on `device` for each (example indices, step seed, offset) of `steps`, decoded ahead by
        the workers. Example i of a step is transformed with the seed derived from (step seed, offset + i), i.e. its
        place in the step's global batch, of which `indices` may be one rank's slice starting at `offset` (the
        evaluation transform when `augment` is false)."""
        def items():
            for indices, step_seed, offset in steps:
                yield [(int(index), derive_seed(step_seed, offset + position) if self.augment else None)
                       for position, index in enumerate(indices.tolist())]

        for inputs, labels in _one_line_errors(self._loader("train", items())):
            yield inputs.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def evaluate_batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, labels) batches of `split` ("train", "val" or "test") with the evaluation transform; "train"
        is a fixed subset of at most TRAIN_EVAL_LIMIT images."""
        count = len(getattr(self, split)[0])
        if split == "train" and count > TRAIN_EVAL_LIMIT:
            generator = torch.Generator().manual_seed(derive_seed(0, "train_eval_subset"))
            indices = torch.randperm(count, generator=generator)[:TRAIN_EVAL_LIMIT].sort().values.tolist()
        else:
            indices = list(range(count))
        batches = [[(index, None) for index in indices[start:start + EVAL_BATCH_IMAGES]]
                   for start in range(0, len(indices), EVAL_BATCH_IMAGES)]
        for inputs, labels in _one_line_errors(self._loader(split, batches)):
            yield inputs.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def _one_line_errors(batches: Iterable):
    """`batches`, with a DataError raised in a worker process (an unreadable image) re-raised as its own one-line
    message instead of the DataLoader's worker traceback."""
    try:
        yield from batches
    except DataError as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        message = lines[-1].split("DataError: ", 1)[-1] if lines else str(error)
        raise DataError(message) from None


def default_loader_workers() -> int:
    """Decoding processes per training job: the machine's cores, at most 8 (0 on a one-core machine)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 1 else min(8, cores)


def load_image_folder(
    root: str | Path | None,
    *,
    validation_size: int,
    train_size: int | None = None,
    image_size: int | None = None,
    augment: bool = True,
    classes: Sequence[int] | None = None,
    loader_workers: int | None = None,
    name: str = "image_folder",
) -> FolderData:
    """Scan an ImageFolder-layout directory (see the module docstring) into `FolderData`.

    `classes` keeps only those class indices (of the sorted class folders), relabelled 0..k-1 in the order given.
    ConfigError naming the value for a missing `root`, a `validation_size` or `train_size` the data cannot hold;
    DataError for a train/ with fewer than 2 class folders (nothing to classify).
    """
    if root is None:
        hint = " (ImageNet cannot be downloaded automatically: its licence needs a sign-up at image-net.org)" \
            if name == "imagenet" else ""
        raise ConfigError(f"data.name {name} needs --data-dir DIR holding train/<class>/ and val/<class>/ image "
                          f"folders{hint}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"--data-dir {root} is not a directory (an image folder needs train/ and val/ in it)")
    class_names, train_paths, train_labels = scan_image_folder(root, "train")
    if len(class_names) < 2:
        raise DataError(f"{root}/train holds {len(class_names)} class folder ({class_names[0]!r}); a classifier "
                        f"needs at least 2 classes: add {root}/train/<class>/ and {root}/val/<class>/ folders")
    _, test_paths, test_labels = scan_image_folder(root, "val", class_names)
    if classes is not None:
        if max(classes) >= len(class_names):
            raise ConfigError(f"data.classes names class {max(classes)}, but {root}/train has "
                              f"{len(class_names)} classes (0..{len(class_names) - 1})")
        relabel = {old: new for new, old in enumerate(classes)}
        train_paths, train_labels = _keep(train_paths, train_labels, relabel)
        test_paths, test_labels = _keep(test_paths, test_labels, relabel)
        class_names = [class_names[index] for index in classes]
    if not 0 < validation_size < len(train_paths):
        raise ConfigError(f"data.validation_size {validation_size} must be between 1 and {len(train_paths) - 1}: "
                          f"{root}/train has {len(train_paths)} images and at least one must remain for training")
    generator = torch.Generator().manual_seed(derive_seed(0, "image_folder_validation"))
    order = torch.randperm(len(train_paths), generator=generator).tolist()
    held_out, kept = sorted(order[:validation_size]), sorted(order[validation_size:])
    if train_size is not None:
        if train_size > len(kept):
            raise ConfigError(f"data.train_size {train_size} is larger than the {len(kept)} training images left "
                              f"after data.validation_size {validation_size}; use at most {len(kept)}")
        kept = sorted(order[validation_size:validation_size + train_size])
    return FolderData(
        root=root,
        classes=class_names,
        train=([train_paths[i] for i in kept], [train_labels[i] for i in kept]),
        val=([train_paths[i] for i in held_out], [train_labels[i] for i in held_out]),
        test=(test_paths, test_labels),
        image_size=image_size or DEFAULT_IMAGE_SIZE,
        augment=augment,
        loader_workers=default_loader_workers() if loader_workers is None else loader_workers,
    )


def _keep(paths: list[Path], labels: list[int], relabel: dict[int, int]) -> tuple[list[Path], list[int]]:
    kept = [(path, relabel[label]) for path, label in zip(paths, labels) if label in relabel]
    return [path for path, _ in kept], [label for _, label in kept]
