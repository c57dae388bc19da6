"""CIFAR-10 tickets transferred to CIFAR-100 end to end through the command line, on generated archives in the
real binary layout (cifar-10-batches-bin/data_batch_N.bin, cifar-100-binary/train.bin with coarse+fine labels)."""

import io
import tarfile

import numpy as np
import pytest
import torch

from ticketlab.cli import main
from ticketlab.lottery.transfer_results import read_transfer_csv
from ticketlab.store import load_tensors

PER_BATCH, TEST = 8, 10


pytestmark = pytest.mark.usefixtures("one_thread_for_module")


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def records(rng, count, classes, coarse=False):
    """`count` records: [coarse label,] label, then the R, G and B planes (1,024 bytes each)."""
    out = bytearray()
    for _ in range(count):
        if coarse:
            out.append(int(rng.integers(0, 20)))
        out.append(int(rng.integers(0, classes)))
        out += rng.integers(0, 256, 3 * 32 * 32, dtype=np.uint8).tobytes()
    return bytes(out)


def write_archives(directory):
    rng = np.random.default_rng(0)
    cifar10 = {f"cifar-10-batches-bin/data_batch_{index}.bin": records(rng, PER_BATCH, 10) for index in range(1, 6)}
    cifar10["cifar-10-batches-bin/test_batch.bin"] = records(rng, TEST, 10)
    (directory / "cifar-10-binary.tar.gz").write_bytes(tar_gz(cifar10))
    cifar100 = {"cifar-100-binary/train.bin": records(rng, 5 * PER_BATCH, 100, coarse=True),
                "cifar-100-binary/test.bin": records(rng, TEST, 100, coarse=True)}
    (directory / "cifar-100-binary.tar.gz").write_bytes(tar_gz(cifar100))


def test_cifar10_tickets_train_on_cifar100(tmp_path, capsys):
    write_archives(tmp_path)
    flags = ["--preset", "conv2_cifar10", "--data-dir", str(tmp_path), "--data.validation_size", "10",
             "--model.width", "4", "--steps", "4it", "--train.eval_every", "2it", "--train.batch_size", "10",
             "--trials", "1", "--variants", "iterative_reset", "--root", str(tmp_path / "runs"), "--quiet"]
    assert main(["find", *flags, "--levels", "1", "--no-report"]) == 0
    source = capsys.readouterr().out.split("experiment: ")[1].split()[0]
    assert main(["transfer", source, "--data.name", "cifar100", "--data-dir", str(tmp_path), "--quiet"]) == 0
    output = capsys.readouterr().out
    transfer_dir = tmp_path / "runs" / output.split("transfer: ")[1].split()[0].rsplit("/", 1)[1]
    rows = read_transfer_csv(transfer_dir / "transfer.csv")
    assert {(row["variant"], row["level"]) for row in rows} == {
        ("transferred", 0), ("transferred", 1), ("random_ticket", 1), ("dense", 0), ("target_found", 1)}
    assert {row["source_data"] for row in rows if row["variant"] == "transferred"} == {"cifar10 adam"}
    assert {row["target"] for row in rows} == {"cifar100 adam"}
    start = load_tensors(next(transfer_dir.glob("*/trial_0/level_01/transferred")) / "weights_init.safetensors")
    ticket = load_tensors(next((tmp_path / "runs").glob("cifar10_*/trial_0/level_01/iterative_reset"))
                          / "weights_init.safetensors")
    assert start["classifier.5.weight"].shape == (100, 16) and ticket["classifier.5.weight"].shape == (10, 16)
    for name, value in ticket.items():
        if not name.startswith("classifier.5."):
            assert torch.equal(start[name], value), name
