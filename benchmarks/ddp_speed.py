"""Data-parallel speed under torchrun on CPU: one job trained by 1 process or by 2 DDP processes (gloo).

Two jobs, each the dense job of a lottery experiment (`train_model`, full masks):
- LeNet-300-100 on Fashion-MNIST (the paper's protocol: Adam 1.2e-3, batch 60; generated data of the same shape
  when the dataset is absent),
- a narrow ResNet-20 (width 8, i.e. half the published 16) on generated 32x32x3 images, SGD 0.1 / momentum 0.9,
  batch 128 and pad-crop-flip augmentation (the resnet20_cifar10 preset's; speed does not depend on the pixel
  values). Every rank augments the whole global batch and keeps its shard (what makes the shards exactly the
  single-process batch), so augmentation is not split.

Each is run as 1 process x 1 thread, 1 process x 2 threads and 2 processes x 1 thread (the machine's 2 cores
either way), every configuration in a fresh `torchrun --standalone` launch. Training iterations/s are timed on
rank 0 between the end of step `--warmup` and the end of the last step (the ranks move in lock step: every step
ends with DDP's all-reduce); wall time is the whole launch (start-up, data loading, the final evaluation).

Reproduce:  python benchmarks/ddp_speed.py            (5-10 minutes on 2 shared cores)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = {
    "lenet300_100": dict(model="lenet300_100", steps=1200, warmup=50),
    "resnet20_w8": dict(model="resnet20", width=8, steps=120, warmup=10),
}
CONFIGURATIONS = ((1, 1), (1, 2), (2, 1))  # (processes, threads per process)


def _data(workload: str):
    import torch

    from ticketlab.config import DataConfig
    from ticketlab.data import load_dataset
    from ticketlab.data.splits import DataSplits
    from ticketlab.errors import DataError

    if workload == "lenet300_100":
        try:
            return load_dataset(DataConfig(name="fashion_mnist", validation_size=5000)), "Fashion-MNIST"
        except DataError:
            shape, sizes = (1, 28, 28), (55000, 5000, 10000)
    else:
        shape, sizes = (3, 32, 32), (5000, 500, 500)
    generator = torch.Generator().manual_seed(0)
    tensors = []
    for count in sizes:
        tensors += [torch.rand(count, *shape, generator=generator), torch.randint(0, 10, (count,), generator=generator)]
    return DataSplits(*tensors, num_classes=10), "generated"


def worker(workload: str, out: Path, quick: bool, device_name: str = "cpu") -> None:
    """One rank of a launch: train the workload's dense job, rank 0 writes its timings to `out` (and on CUDA its
    final weights beside it, `out` with the suffix .safetensors, so a launch can be compared with one process)."""
    import torch

    import ticketlab
    from ticketlab.models import build_model, initialize
    from ticketlab.pruning import full_masks, prunable_weights
    from ticketlab.training.distributed import from_environment
    from ticketlab.training.loop import train_model

    spec = WORKLOADS[workload]
    if quick:  # a smoke test of the script
        spec = dict(spec, steps=spec["steps"] // 10, warmup=spec["warmup"] // 10)
    device = torch.device(device_name)
    group = from_environment(device) if device.type == "cpu" else cuda_group(device)
    if group is not None:
        device = group.device
    data, source = _data(workload)
    data = data.to(device)
    preset = "lenet_fashion_mnist" if workload == "lenet300_100" else "resnet20_cifar10"
    config = ticketlab.preset(preset).train
    config = dataclasses.replace(config, steps=f"{spec['steps']}it", eval_every=f"{spec['steps']}it", milestones=())
    model = initialize(build_model(spec["model"], data.input_shape, 10, width=spec.get("width")), "kaiming_normal",
                       0).to(device)
    marks: dict[int, float] = {}
    leader = group is None or group.is_leader
    callbacks = dict(snapshot_steps=(spec["warmup"], spec["steps"]),
                     on_snapshot=lambda step, *_: marks.setdefault(step, time.perf_counter())) if leader else {}
    augment = None
    if workload != "lenet300_100":  # the preset's augmentation, of the whole global batch on every rank
        from ticketlab.data.augment import pad_crop_flip

        augment = pad_crop_flip
    train_model(model, data, config, masks=full_masks(prunable_weights(model)), data_seed=0, group=group,
                augment=augment, **callbacks)
    if leader:
        timed = spec["steps"] - spec["warmup"]
        out.write_text(json.dumps({"iterations_per_s": timed / (marks[spec["steps"]] - marks[spec["warmup"]]),
                                   "data": source, "batch": config.batch_size, "steps": spec["steps"],
                                   "device": str(device), "world_size": 1 if group is None else group.world_size,
                                   "backend": None if group is None else torch.distributed.get_backend()}))
        if device.type == "cuda":
            from safetensors.torch import save_file

            save_file({name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()},
                      str(out.with_suffix(".safetensors")))


def cuda_group(device):
    """This rank's NCCL group under torchrun, a group of one when torchrun started a single process (so NCCL and
    DDP run even on a one-GPU machine), None outside torchrun."""
    import atexit

    import torch
    import torch.distributed as dist

    from ticketlab.training.distributed import DataParallelGroup, from_environment

    group = from_environment(device)
    if group is not None or "LOCAL_RANK" not in os.environ:
        return group
    local = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    atexit.register(dist.destroy_process_group)
    return DataParallelGroup(rank=0, world_size=1, device=local)


def launch(workload: str, processes: int, threads: int, quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "timing.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
                   __file__, "--worker", workload, "--out", str(out)] + (["--quick"] if quick else [])
        started = time.perf_counter()
        subprocess.run(command, check=True, env=os.environ | {"OMP_NUM_THREADS": str(threads)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text()) | {"wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="a tenth of the steps (a smoke test, not a measurement)")
    parser.add_argument("--device", default="cpu", help="--worker: cpu (gloo under torchrun) or cuda (NCCL)")
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        worker(args.worker, args.out, args.quick, args.device)
        return
    print(f"# python benchmarks/ddp_speed.py --workloads {args.workloads}")
    print(f"# {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    print("| job | data | batch (per rank) | processes x threads | iterations/s | vs 1x1 | vs 1x2 | wall s (launch) |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    for workload in args.workloads.split(","):
        rows = {(p, t): launch(workload, p, t, args.quick) for p, t in CONFIGURATIONS}
        one_thread, two_threads = rows[(1, 1)]["iterations_per_s"], rows[(1, 2)]["iterations_per_s"]
        for (processes, threads), row in rows.items():
            rate = row["iterations_per_s"]
            print(f"| {workload} ({row['steps']} it) | {row['data']} | {row['batch']} ({row['batch'] // processes}) | "
                  f"{processes} x {threads} | {rate:.1f} | {rate / one_thread:.2f}x | {rate / two_threads:.2f}x | "
                  f"{row['wall_s']:.1f} |", flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
