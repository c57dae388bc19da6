"""Narrow ResNet-20 rewinding sweep on offline data in the real CIFAR-10 binary layout.

No network. `--source fashion` (the default) writes real Fashion-MNIST images (Debian's dataset-fashion-mnist,
padded to 32x32 and repeated over 3 channels) as `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`, exactly
the layout of the CIFAR-10 binary archive, so the real CIFAR-10 loading path runs on a task that is not trivially
easy; `--source synthetic` writes a generated colour-and-stripe dataset instead (learnable but near 100%). The
script then runs `ticketlab sweep`'s API (preset resnet20_tiny: width 4, SGD, augmentation, global pruning,
lengthened by the flags below) and prints the sweep table, wall time and peak memory. Point `--data-dir` at the
real extracted archive to use real CIFAR-10 instead.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ticketlab
from ticketlab.lottery.sweep import rewind_sweep


def write_synthetic_cifar10(directory: Path, train_per_batch: int = 400, test: int = 1000, seed: int = 0) -> Path:
    """Write learnable 32x32 RGB images in the CIFAR-10 binary record layout; returns the batches folder."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(110, 145, (10, 3))  # close colours: the stripes' orientation carries most of the label
    rows, columns = np.mgrid[0:32, 0:32]
    patterns = np.stack([np.sin((rows * np.cos(a) + columns * np.sin(a)) / 2.0) for a in np.linspace(0, np.pi, 10)])
    folder = directory / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)

    def records(count: int) -> bytes:
        labels = rng.integers(0, 10, count)
        noise = rng.normal(0, 70, (count, 3, 32, 32))
        images = colours[labels][:, :, None, None] + 30 * patterns[labels][:, None] + noise
        images = np.clip(images, 0, 255).astype(np.uint8)
        out = bytearray()
        for label, image in zip(labels, images):
            out.append(int(label))
            out += image.tobytes()
        return bytes(out)

    for batch in range(1, 6):
        (folder / f"data_batch_{batch}.bin").write_bytes(records(train_per_batch))
    (folder / "test_batch.bin").write_bytes(records(test))
    (folder / "batches.meta.txt").write_text("\n".join(f"class{index}" for index in range(10)) + "\n")
    return folder


def write_fashion_mnist_as_cifar10(directory: Path) -> Path:
    """Write real Fashion-MNIST (60K train, 10K test) in the CIFAR-10 binary record layout; returns the folder."""
    from ticketlab.data.mnist import load_mnist_like

    arrays = load_mnist_like("fashion_mnist", download=False)
    folder = directory / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)

    def records(images: np.ndarray, labels: np.ndarray) -> bytes:
        padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # 28x28 -> 32x32, the usual MNIST-to-32 padding
        rgb = np.repeat(padded[:, None], 3, axis=1).reshape(len(images), -1)
        return np.concatenate([labels.astype(np.uint8)[:, None], rgb], axis=1).tobytes()

    train_images, train_labels = arrays["train_images"], arrays["train_labels"]
    for batch in range(5):  # CIFAR-10 has 50K training records; the last 10K Fashion images are left out
        rows = slice(batch * 10_000, (batch + 1) * 10_000)
        (folder / f"data_batch_{batch + 1}.bin").write_bytes(records(train_images[rows], train_labels[rows]))
    (folder / "test_batch.bin").write_bytes(records(arrays["test_images"], arrays["test_labels"]))
    names = "tshirt trouser pullover dress coat sandal shirt sneaker bag boot".split()
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rewinds", default="0it,50it,100it")
    parser.add_argument("--data-dir", help="an extracted CIFAR-10 binary archive (default: synthetic, offline)")
    parser.add_argument("--source", choices=["fashion", "synthetic"], default="fashion",
                        help="what to write in the CIFAR-10 layout when --data-dir is not given")
    parser.add_argument("--width", type=int, default=4, help="first-stage channels (model.width; 16 is ResNet-20)")
    parser.add_argument("--train-size", type=int, default=1000, help="training images used (data.train_size)")
    parser.add_argument("--steps", default="200it", help="training length per level (train.steps)")
    parser.add_argument("--milestones", default="150it", help="comma-separated lr drops (train.milestones)")
    parser.add_argument("--levels", type=int, default=3, help="pruning rounds after the dense network")
    parser.add_argument("--variants", default="iterative_reset,iterative_reinit")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--root", default="runs/benchmarks")
    args = parser.parse_args()
    if args.data_dir:
        data_dir = args.data_dir
    else:
        writer = write_fashion_mnist_as_cifar10 if args.source == "fashion" else write_synthetic_cifar10
        data_dir = str(writer(Path(tempfile.mkdtemp(prefix="cifar-format-"))).parent)
    config = ticketlab.preset("resnet20_tiny").replace(
        variants=args.variants.split(","), trials=args.trials,
        **{"data.data_dir": data_dir, "data.train_size": args.train_size, "train.steps": args.steps,
           "model.width": args.width,
           "train.milestones": tuple(args.milestones.split(",")), "prune.levels": args.levels},
    )
    started = time.time()
    result = rewind_sweep(config, args.rewinds.split(","), root=args.root, progress=False,
                          workers=args.workers)
    wall = time.time() - started
    print(result.summary_csv.read_text())
    print("figures: " + ", ".join(str(path) for path in result.figure_files))
    print(f"wall time: {wall:.0f} s; peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("reproduce: python benchmarks/resnet20_rewind_sweep.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
