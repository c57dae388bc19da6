"""Image-folder (ImageNet layout) throughput: JPEG decoding + random-resized crop in worker processes, against the
training step of an ImageNet ResNet on the same machine, so you can see which one bounds a job.

Reproduce (generates its own JPEGs of ImageNet's typical 500x375 size in a temporary folder; a few minutes):

    python benchmarks/image_folder_speed.py --images 256 --workers 0,1,2 --model resnet18 --batch 32 --threads 2

Prints images/s of the loader alone (training transform, 224x224 crops) for each worker count, and images/s and
achieved GFLOP/s of SGD training steps (forward + backward, 3x the forward FLOPs) of the model on random
224x224 batches, with the fp32 matmul peak measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ticketlab.data.image_folder import load_image_folder
from ticketlab.export.cost import model_cost
from ticketlab.models import build_model, initialize
from ticketlab.training.loop import training_batches


def write_images(root: Path, count: int, classes: int = 8) -> None:
    rng = np.random.default_rng(0)
    for split, number in (("train", count), ("val", classes)):
        for index in range(number):
            folder = root / split / f"n{index % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            smooth = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)  # a photo-like low-frequency image
            image = Image.fromarray(smooth).resize((500, 375), Image.BICUBIC)
            image.save(folder / f"{index:06d}.JPEG", quality=90)


def loader_rate(root: Path, workers: int, batch: int, batches: int) -> float:
    data = load_image_folder(root, validation_size=1, image_size=224, loader_workers=workers)
    stream = training_batches(data, 0, batches + 1, batch, data_seed=0)
    next(stream)  # start-up (worker processes) is not counted
    started = time.perf_counter()
    for _ in range(batches):
        next(stream)
    elapsed = time.perf_counter() - started
    stream.close()
    return batches * batch / elapsed


def matmul_peak_gflops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def training_rate(name: str, batch: int, steps: int) -> tuple[float, float]:
    model = initialize(build_model(name, (3, 224, 224), 1000), "kaiming_normal", 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    inputs, labels = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))
    forward_flops = model_cost(model, torch.zeros(1, 3, 224, 224)).dense_flops

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - started
    return steps * batch / elapsed, 3 * forward_flops * batch * steps / elapsed / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/image_folder_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_images(root, args.images)
        batches = max(1, args.images // args.batch - 1)
        print(f"# {command}")
        print("| loader workers | images/s (decode + random-resized crop 224 + flip + normalize) |")
        print("|---:|---:|")
        for workers in (int(value) for value in args.workers.split(",")):
            print(f"| {workers} | {loader_rate(root, workers, args.batch, batches):.0f} |")
    peak = matmul_peak_gflops()
    images, gflops = training_rate(args.model, args.batch, args.steps)
    print(f"\n{args.model} SGD training, batch {args.batch}, 224x224, {args.threads} threads: {images:.1f} images/s, "
          f"{gflops:.1f} GFLOP/s = {100 * gflops / peak:.0f}% of the fp32 matmul peak ({peak:.1f} GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
