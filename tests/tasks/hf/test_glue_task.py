"""The GLUE task through the lottery engine: IMP rewinding to the pre-trained weights θ_pre through the CLI and the
Python API, exact masks under AdamW with weight decay, the pruned tensors (Chen et al. 2020's choice), and bad
input as one line before anything trains."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ticketlab import cli
from ticketlab.lottery.integrity import read_run_config
from ticketlab.store import load_tensors

from conftest import save_tiny_bert, write_glue

ATTENTION_AND_FFN = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                     "intermediate.dense", "output.dense")


def find_args(bert_dir: Path, glue_dir: Path, root: Path, *extra: str) -> list[str]:
    return ["find", "--task", "glue", "--model.name", "pretrained", "--data.name", "sst2", "--data-dir", str(glue_dir),
            "--glue.model_dir", str(bert_dir), "--data.validation_size", "16", "--train.optimizer", "adamw",
            "--train.lr", "1e-3", "--train.weight_decay", "0.1", "--train.batch_size", "16", "--steps", "6it",
            "--train.eval_every", "3it", "--levels", "2", "--prune.rate", "0.5", "--prune.scope", "global",
            "--rewind", "0it", "--trials", "1", "--variants", "iterative_reset,iterative_reinit",
            "--root", str(root), "--quiet", "--no-report", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def glue_run(bert_dir, sst2_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    assert cli.main(find_args(bert_dir, sst2_dir, root)) == 0
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    return run_dir


def test_tickets_rewind_to_the_pretrained_weights(glue_run, bert_dir):
    pretrained = {name.removeprefix("bert."): value for name, value in
                  load_tensors_plain(bert_dir / "model.safetensors").items() if name.startswith("bert.")}
    dense_init = load_tensors(glue_run / "trial_0" / "level_00" / "dense" / "weights_init.safetensors")
    ticket_dir = glue_run / "trial_0" / "level_02" / "iterative_reset"
    ticket_init, mask = load_tensors(ticket_dir / "weights_init.safetensors"), load_tensors(ticket_dir / "mask.safetensors")
    for name, value in pretrained.items():  # θ0 is θ_pre: every tensor the checkpoint holds
        torch.testing.assert_close(dense_init[f"bert.{name}"], value, rtol=0, atol=0)
        keep = mask[f"bert.{name}"].float() if f"bert.{name}" in mask else 1.0
        assert torch.equal(ticket_init[f"bert.{name}"], value * keep), name
    # the new head (classifier, and the pooler an MLM checkpoint lacks) is drawn from the trial seed: the same in
    # the dense run and the ticket
    assert torch.equal(dense_init["classifier.weight"], ticket_init["classifier.weight"])
    # Chen et al.: the encoder's attention and FFN weights and the pooler, globally; no embeddings, no classifier
    expected = {f"bert.encoder.layer.{layer}.{part}.weight" for layer in range(2) for part in ATTENTION_AND_FFN}
    assert set(mask) == expected | {"bert.pooler.dense.weight"}
    kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    assert kept == pytest.approx(0.25, abs=0.002)


def test_pruned_weights_stay_exactly_zero_through_adamw_weight_decay(glue_run):
    for mask_path in glue_run.rglob("mask.safetensors"):
        mask, final = load_tensors(mask_path), load_tensors(mask_path.parent / "weights_final.safetensors")
        for name, keep in mask.items():
            assert torch.all(final[name][~keep.bool()] == 0), (mask_path, name)
            assert torch.any(final[name][keep.bool()] != 0)
    config = read_run_config(glue_run)
    assert config.train.optimizer == "adamw" and config.train.weight_decay == 0.1


def test_the_reinit_control_starts_from_random_weights_not_the_pretrained_ones(glue_run, bert_dir):
    pretrained = load_tensors_plain(bert_dir / "model.safetensors")
    reinit = load_tensors(glue_run / "trial_0" / "level_01" / "iterative_reinit" / "weights_init.safetensors")
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    assert not torch.equal(reinit[name], pretrained[name])
    kept = reinit[name][reinit[name] != 0]  # BERT's own init: normal with std initializer_range 0.02
    assert 0.015 < float(kept.std()) < 0.025
    assert not torch.equal(reinit["bert.embeddings.word_embeddings.weight"],
                           pretrained["bert.embeddings.word_embeddings.weight"])


def test_results_carry_the_glue_metric_and_the_api_reuses_the_run(glue_run, bert_dir, sst2_dir):
    import ticketlab

    rows = list(csv.DictReader((glue_run / "results.csv").open()))
    assert {row["metric"] for row in rows} == {"accuracy"} and len(rows) == 2 * 3
    config = read_run_config(glue_run)
    stamps = {path: path.stat().st_mtime_ns for path in glue_run.rglob("weights_final.safetensors")}
    result = ticketlab.find_tickets(config, root=str(glue_run.parent), report=False, workers=1, progress=False)
    assert result.run_dir == glue_run and len(result.rows) == 6
    assert stamps == {path: path.stat().st_mtime_ns for path in glue_run.rglob("weights_final.safetensors")}


def test_the_python_api_rewinds_to_step_k_of_fine_tuning(glue_run, tmp_path):
    import ticketlab

    config = read_run_config(glue_run).replace(**{"prune.rewind": "2it", "prune.levels": 1,
                                                  "variants": ("iterative_reset",)})
    result = ticketlab.find_tickets(config, root=str(tmp_path), report=False, workers=1, progress=False)
    dense = result.run_dir / "trial_0" / "level_00" / "dense"
    ticket = result.run_dir / "trial_0" / "level_01" / "iterative_reset"
    rewound, start = load_tensors(dense / "weights_rewind.safetensors"), load_tensors(ticket / "weights_init.safetensors")
    mask = load_tensors(ticket / "mask.safetensors")
    pretrained = load_tensors(dense / "weights_init.safetensors")
    for name, value in rewound.items():  # θ_2, the weights after 2 fine-tuning steps, masked
        keep = mask[name].float() if name in mask else 1.0
        assert torch.equal(start[name], value * keep), name
    name = "bert.encoder.layer.1.output.dense.weight"
    assert not torch.equal(rewound[name], pretrained[name])  # two AdamW steps moved it off θ_pre
    assert [row["final_iteration"] for row in result.rows] == [6, 6]


def load_tensors_plain(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticketlab: error: "), captured.err
    return lines[0]


def test_bad_inputs_are_one_line_before_training(bert_dir, sst2_dir, tmp_path, capsys):
    root = tmp_path / "runs"
    error = _one_line_error(capsys, find_args(tmp_path, sst2_dir, root))
    assert "glue.model_dir" in error and "holds no Hugging Face model" in error
    three_labels = save_tiny_bert(tmp_path / "three", head="classifier", num_labels=3)
    error = _one_line_error(capsys, find_args(three_labels, sst2_dir, root))
    assert "3 labels" in error and "sst2 needs 2" in error
    wrong = tmp_path / "wrong"
    write_glue(wrong, "mrpc")  # MRPC's columns where SST-2's are expected
    error = _one_line_error(capsys, find_args(bert_dir, wrong, root))
    assert "SST-2" in error and "'sentence'" in error and "train.tsv" in error
    assert not any(root.rglob("result.json"))  # nothing trained


def test_a_resumed_run_refuses_other_data_or_another_model(glue_run, bert_dir, tmp_path, capsys):
    other_data = write_glue(tmp_path / "other", "sst2", seed=1)
    error = _one_line_error(capsys, find_args(bert_dir, other_data, glue_run.parent))
    assert "is not the one this run was trained on" in error
    assert (glue_run / "corpus.json").is_file()


def test_missing_transformers_names_the_extra(monkeypatch):
    import sys

    from ticketlab.errors import ConfigError
    from ticketlab.tasks.hf.pretrained import transformers_module

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'ticketlab\[hf\]'"):
        transformers_module()


@pytest.mark.parametrize("format", ["dense", pytest.param("prune", marks=pytest.mark.slow)])
def test_export_writes_a_ticket_that_reproduces_the_masked_model(glue_run, tmp_path, capsys, format):
    from safetensors.torch import load_file

    output = tmp_path / f"ticket-{format}.safetensors"
    assert cli.main(["export", str(glue_run), "--level", "2", "--format", format, "--output", str(output)]) == 0
    tensors = load_file(str(output))
    mask = load_tensors(glue_run / "trial_0" / "level_02" / "iterative_reset" / "mask.safetensors")
    name = "bert.encoder.layer.0.attention.self.query.weight"
    if format == "dense":  # the model's own parameter names, pruned entries 0
        assert torch.all(tensors[name][~mask[name].bool()] == 0) and "classifier.weight" in tensors
    else:
        assert torch.equal(tensors[f"{name[:-len('.weight')]}.weight_mask"].bool(), mask[name].bool())


def _save_as_dataset(glue_dir: Path, target: Path, task: str = "sst2", drop_split: str | None = None,
                     label_of_first=None) -> Path:
    """The TSV files of `glue_dir` as a `datasets` DatasetDict saved to disk, in the hub's GLUE columns."""
    datasets = pytest.importorskip("datasets")
    splits = {}
    for split, hub_split in (("train", "train"), ("dev", "validation")):
        lines = (glue_dir / f"{split}.tsv").read_text().strip().split("\n")[1:]
        sentences, labels = zip(*(line.split("\t") for line in lines))
        labels = [int(label) for label in labels]
        if label_of_first is not None and hub_split == "validation":
            labels[0] = label_of_first
        splits[hub_split] = datasets.Dataset.from_dict({"sentence": list(sentences), "label": labels,
                                                        "idx": list(range(len(labels)))})
    for name in [drop_split] if drop_split else []:
        del splits[name]
    datasets.DatasetDict(splits).save_to_disk(str(target))
    return target


def test_a_saved_datasets_copy_trains_exactly_as_the_tsv_files(glue_run, bert_dir, sst2_dir, tmp_path):
    saved = _save_as_dataset(sst2_dir, tmp_path / "sst2_hub")
    root = tmp_path / "runs"
    assert cli.main(find_args(bert_dir, saved, root)) == 0
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    columns = ("level", "variant", "weights_remaining_percent", "early_stop_iteration", "early_stop_test_metric",
               "final_test_metric")

    def rows(path):
        return [tuple(row[name] for name in columns) for row in csv.DictReader((path / "results.csv").open())]

    assert rows(run_dir) == rows(glue_run)  # the same examples, labels and tokens: the same numbers


def test_a_saved_dataset_without_validation_or_with_hidden_labels_is_one_line(bert_dir, sst2_dir, tmp_path, capsys):
    root = tmp_path / "runs"
    no_validation = _save_as_dataset(sst2_dir, tmp_path / "no_val", drop_split="validation")
    error = _one_line_error(capsys, find_args(bert_dir, no_validation, root))
    assert "without a 'validation' split" in error and "train" in error
    hidden = _save_as_dataset(sst2_dir, tmp_path / "hidden", label_of_first=-1)
    error = _one_line_error(capsys, find_args(bert_dir, hidden, root))
    assert "label -1" in error and "hidden test labels" in error
    assert not any(root.rglob("result.json"))


def test_a_saved_dataset_without_the_datasets_package_names_the_install(sst2_dir, tmp_path, monkeypatch):
    import sys

    from ticketlab.errors import ConfigError
    from ticketlab.tasks.hf.glue_data import read_saved_dataset

    saved = _save_as_dataset(sst2_dir, tmp_path / "sst2_hub")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ConfigError, match=r"needs the datasets package: pip install datasets"):
        read_saved_dataset(str(saved), "sst2")


def test_a_saved_vit_finds_tickets_that_rewind_to_its_pretrained_weights(tmp_path):
    """A tiny random-weight ViT saved with `save_pretrained`, as a network of the classification task: θ0 is its
    saved weights, the ticket at rewind 0 is θ_pre masked, and pruned weights stay exactly 0 through AdamW."""
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTForImageClassification

    import ticketlab
    from ticketlab.data import make_splits
    from ticketlab.tasks.hf.vision import ImageClassifier

    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32,
                                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                        num_labels=3)).save_pretrained(tmp_path / "vit")
    network = ImageClassifier(tmp_path / "vit")
    pretrained = {name: value.clone() for name, value in network.state_dict().items()}
    save_file({name: value.contiguous() for name, value in pretrained.items()}, str(tmp_path / "vit.safetensors"))
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(48, 3, 16, 16, generator=generator), torch.randint(0, 3, (48,), generator=generator)
    data = make_splits(images[:40], labels[:40], images[40:], labels[40:], validation_size=8, num_classes=3)
    config = ticketlab.preset("mnist1d").replace(trials=1, variants=["iterative_reset", "iterative_reinit"], **{
        "model.weights": str(tmp_path / "vit.safetensors"), "prune.rewind": "0it", "prune.levels": 1,
        "train.optimizer": "adamw", "train.weight_decay": 0.1, "train.steps": "3it", "train.eval_every": "1it",
        "train.batch_size": 8, "train.lr": 1e-3})
    result = ticketlab.find_tickets(config, model=network, data=data, root=tmp_path / "runs", progress=False,
                                    report=False, workers=1)
    ticket = result.run_dir / "trial_0" / "level_01" / "iterative_reset"
    start, mask = load_tensors(ticket / "weights_init.safetensors"), load_tensors(ticket / "mask.safetensors")
    final = load_tensors(ticket / "weights_final.safetensors")
    assert {"vit.layers.0.attention.q_proj.weight", "vit.layers.1.mlp.fc2.weight"} <= set(mask)
    assert all(torch.equal(start[name], pretrained[name] * mask[name].float()) for name in mask)
    assert all(torch.equal(start[name], pretrained[name]) for name in pretrained if name not in mask)
    assert all(torch.all(final[name][~keep.bool()] == 0) for name, keep in mask.items())
    reinit = load_tensors(result.run_dir / "trial_0" / "level_01" / "iterative_reinit" / "weights_init.safetensors")
    name = "vit.layers.0.mlp.fc1.weight"
    assert not torch.equal(reinit[name], start[name])  # the control draws fresh weights
    assert len(result.rows) == 4  # the dense network under each variant, and each level-1 ticket
