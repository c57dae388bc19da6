"""Data-pipeline benchmark: in-memory tensors + batched augmentation vs a per-sample Dataset/DataLoader baseline.

Reproduce (2 CPU threads, a few minutes):

    python benchmarks/conv_data_pipeline.py --steps 30 --threads 2
    python benchmarks/conv_data_pipeline.py --imp-memory        # peak RSS of a ResNet-20 IMP run, full-size data

Workloads: Conv-2 on Fashion-MNIST (the Debian files if installed, else random 28x28 images; no augmentation,
as in the paper) and ResNet-20 (width 16) on CIFAR-shaped random data (pad+crop+flip, per-channel normalization).
For each: images/s of the data pipeline alone (producing training batches) and of full training steps
(SGD, forward+backward), for both pipelines. The baseline is the torchvision-style pipeline written without
torchvision: a Dataset of uint8 HWC arrays whose __getitem__ converts, pads, crops, flips and normalizes one
example with numpy, batched by a shuffling DataLoader (collate to a tensor).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from ticketlab.data.augment import pad_crop_flip
from ticketlab.models import build_model, initialize
from ticketlab.training.loop import batch_indices


class PerSampleImages(Dataset):
    """uint8 [N, H, W, C] images; each item is converted, augmented and normalized on its own (numpy)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: np.ndarray, std: np.ndarray, augment: bool):
        self.images, self.labels, self.mean, self.std, self.augment = images, labels, mean, std, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index].astype(np.float32) / 255.0  # ToTensor-like scaling, HWC
        if self.augment:
            padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
            top, left = np.random.randint(0, 9, size=2)
            image = padded[top : top + image.shape[0], left : left + image.shape[1]]
            if np.random.rand() < 0.5:
                image = image[:, ::-1]
        image = (image - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), int(self.labels[index])


def fashion_mnist_or_random(count: int) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from ticketlab.data.mnist import load_mnist_like

        arrays = load_mnist_like("fashion_mnist", download=False)
        return arrays["train_images"][:count, :, :, None], arrays["train_labels"][:count], "Fashion-MNIST"
    except Exception:  # not installed: same shapes, random pixels
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (count, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, count), "random 28x28"


def measure(workload: dict, steps: int, batch_size: int, loader_workers: int) -> dict:
    images, labels, augment = workload["images"], workload["labels"], workload["augment"]
    mean = (images.reshape(-1, images.shape[-1]).mean(axis=0) / 255.0).astype(np.float32)
    std = (images.reshape(-1, images.shape[-1]).std(axis=0) / 255.0).astype(np.float32)
    # in-memory path: one float tensor [N, C, H, W], normalized once
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    x = ((x - torch.from_numpy(mean).float()[:, None, None]) / torch.from_numpy(std).float()[:, None, None]).contiguous()
    y = torch.from_numpy(labels.astype(np.int64))

    def memory_batches(count):
        for step in range(count):
            indices = batch_indices(step, len(x), batch_size, data_seed=0)
            inputs = x[indices]
            yield (pad_crop_flip(inputs, seed=step) if augment else inputs), y[indices]

    def loader_batches(count):
        dataset = PerSampleImages(images, labels, mean, std, augment)
        produced, epoch = 0, 0
        while produced < count:  # a new shuffled epoch whenever one runs out
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                num_workers=loader_workers, generator=torch.Generator().manual_seed(epoch))
            for batch in loader:
                if produced == count:
                    return
                produced += 1
                yield batch
            epoch += 1

    results = {}
    data_steps = 10 * steps  # producing batches is cheap: time more of them
    for name, batches in (("in_memory", memory_batches), ("dataloader", loader_batches)):
        for _ in batches(3):  # warm-up (first-call allocations, thread pools)
            pass
        start = time.perf_counter()
        for _ in batches(data_steps):
            pass
        data_s = time.perf_counter() - start
        model = initialize(workload["make_model"](), "kaiming_normal", 0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def train(count):
            for inputs, targets in batches(count):
                loss = F.cross_entropy(model(inputs), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

        train(2)
        start = time.perf_counter()
        train(steps)
        train_s = time.perf_counter() - start
        results[name] = {"data_images_per_s": round(data_steps * batch_size / data_s),
                         "train_images_per_s": round(steps * batch_size / train_s, 1)}
    for kind in ("data", "train"):
        results[f"{kind}_speedup"] = round(
            results["in_memory"][f"{kind}_images_per_s"] / results["dataloader"][f"{kind}_images_per_s"], 2)
    return results


def imp_peak_memory() -> dict:
    """Peak RSS of a short ResNet-20 (width 16) IMP run with full-size CIFAR-shaped tensors in memory.

    The 50K training images are all resident (the split is a view of them) but only the first 2,000 are trained
    on and evaluated, so the check takes minutes; validation (5K) and test (10K) are full size. Peak memory is
    the data (~0.7 GiB) plus evaluation activations (batches of 8,192), neither of which depends on that choice.
    """
    from ticketlab.config import DataConfig, ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
    from ticketlab.data import make_splits
    from ticketlab.api import find_tickets
    import tempfile

    generator = torch.Generator().manual_seed(0)
    data = make_splits(torch.randn(50_000, 3, 32, 32, generator=generator), torch.randint(0, 10, (50_000,)),
                       torch.randn(10_000, 3, 32, 32, generator=generator), torch.randint(0, 10, (10_000,)),
                       validation_size=5000, train_size=2000)
    config = ExperimentConfig(
        model=ModelConfig(name="resnet20", init="kaiming_normal"),
        data=DataConfig(name="cifar10", augment=True),
        train=TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128, steps="10it",
                          eval_every="10it"),
        prune=PruneConfig(scope="global", rate=0.2, output_rate=None, levels=1),
        variants=("iterative_reset",), trials=1,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        find_tickets(config, root=root, data=data, progress=False, report=False)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"imp_peak_rss_mib": round(peak_mib, 1), "imp_wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per measurement")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader worker processes (baseline)")
    parser.add_argument("--imp-memory", action="store_true", help="only measure the IMP run's peak RSS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.imp_memory:
        print(json.dumps(imp_peak_memory()))
        return
    fashion_images, fashion_labels, source = fashion_mnist_or_random(12_000)
    rng = np.random.default_rng(1)
    workloads = {
        f"conv2 on {source} (batch 60)": dict(
            images=fashion_images, labels=fashion_labels, augment=False, batch_size=60,
            make_model=lambda: build_model("conv2", (1, 28, 28), 10)),
        "resnet20 w16 on CIFAR-shaped data, pad+crop+flip (batch 128)": dict(
            images=rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8), labels=rng.integers(0, 10, 10_000),
            augment=True, batch_size=128, make_model=lambda: build_model("resnet20", (3, 32, 32), 10)),
    }
    report = {"threads": args.threads, "steps": args.steps, "loader_workers": args.loader_workers}
    for name, workload in workloads.items():
        report[name] = measure(workload, args.steps, workload["batch_size"], args.loader_workers)
        print(name, json.dumps(report[name], indent=1), flush=True)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    imp = subprocess.run([sys.executable, __file__, "--imp-memory", "--threads", str(args.threads)],
                         capture_output=True, text=True, check=True)
    report.update(json.loads(imp.stdout.strip().splitlines()[-1]))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
