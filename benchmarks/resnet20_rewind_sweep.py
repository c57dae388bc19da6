"""Narrow ResNet-20 rewinding sweep on offline data in the real CIFAR-10 binary layout.

No network: the script writes a learnable synthetic dataset (each class a colour and stripe pattern plus noise)
as `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`, exactly the layout of the CIFAR-10 binary archive,
then runs `ticketlab sweep`'s API on it (preset resnet20_tiny: width 4, SGD, augmentation, global pruning) and
prints the sweep table, wall time and peak memory. Point `--data-dir` at the real extracted archive to use
real CIFAR-10 instead.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rewinds", default="0it,50it,100it")
    parser.add_argument("--data-dir", help="an extracted CIFAR-10 binary archive (default: synthetic, offline)")
    parser.add_argument("--root", default="runs/benchmarks")
    args = parser.parse_args()
    data_dir = args.data_dir or str(write_synthetic_cifar10(Path(tempfile.mkdtemp(prefix="cifar-format-"))).parent)
    config = ticketlab.preset("resnet20_tiny").replace(
        variants=["iterative_reset", "iterative_reinit"], **{"data.data_dir": data_dir}
    )
    started = time.time()
    result = rewind_sweep(config, args.rewinds.split(","), root=args.root, progress=False)
    wall = time.time() - started
    print(result.summary_csv.read_text())
    print("figures: " + ", ".join(str(path) for path in result.figure_files))
    print(f"wall time: {wall:.0f} s; peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("reproduce: python benchmarks/resnet20_rewind_sweep.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
