"""GLUE's file layouts (train.tsv and dev.tsv of each task, as the GLUE download script writes them), read into
token tensors held in memory.

A task may instead be a Hugging Face `datasets` dataset saved to disk (`load_dataset("glue", "sst2")` then
`save_to_disk(DIR)`: DIR holds dataset_dict.json): its `train` and `validation` splits stand for train.tsv and
dev.tsv, its columns are the hub's names (`sentence`, `sentence1`/`sentence2`, `question1`/`question2`, ...) and its
labels the class indices in GLUE's order. Reading it needs the optional `datasets` package.

Splits: GLUE's test labels are hidden, so the test split is dev.tsv (what Chen et al. 2020 and most papers report);
the validation split that picks the early-stopping point is the last `data.validation_size` rows of train.tsv, and
`data.train_size` keeps the first N of the remaining rows. Every split is tokenized once, padded to its longest
example (at most `max_length` tokens); a training batch is trimmed to its own longest example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ticketlab.errors import ConfigError


@dataclass(frozen=True)
class GlueLayout:
    """One GLUE task's TSV columns: the text columns (one sentence or a pair), the label column and its values
    (None: a regression score), by header name, or by position for a file without a header (CoLA)."""

    title: str  # GLUE's name, also the folder the GLUE download script writes
    text_columns: tuple[str | int, ...]
    label_column: str | int
    labels: tuple[str, ...] | None
    metric: str  # the primary metric GLUE reports (ticketlab.tasks.hf.metrics)
    hub_text_columns: tuple[str, ...]  # the text columns of the Hugging Face `datasets` copy (its label: "label")
    columns: int | None = None  # headerless files: the columns of every row

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    def describe(self) -> str:
        if self.columns is not None:
            return f"{self.columns} tab-separated columns and no header (label in column {self.label_column}, " \
                   f"sentence in column {self.text_columns[0]}, counting from 0)"
        return f"a header with the columns {', '.join(map(str, (*self.text_columns, self.label_column)))}"


GLUE_LAYOUTS: dict[str, GlueLayout] = {
    "sst2": GlueLayout("SST-2", ("sentence",), "label", ("0", "1"), "accuracy", ("sentence",)),
    "cola": GlueLayout("CoLA", (3,), 1, ("0", "1"), "matthews", ("sentence",), columns=4),
    "mrpc": GlueLayout("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), "f1", ("sentence1", "sentence2")),
    "qqp": GlueLayout("QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), "f1", ("question1", "question2")),
    "stsb": GlueLayout("STS-B", ("sentence1", "sentence2"), "score", None, "pearson", ("sentence1", "sentence2")),
    "qnli": GlueLayout("QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment"), "accuracy",
                       ("question", "sentence")),
    "rte": GlueLayout("RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), "accuracy",
                      ("sentence1", "sentence2")),
}
DATASETS_HINT = "pip install datasets (or 'ticketlab[datasets]')"


@dataclass
class TextSplit:
    """Token tensors of one split (input_ids, attention_mask and, where the tokenizer makes them, token_type_ids)
    and its labels (class indices, or float scores for regression)."""

    features: dict[str, torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> "TextSplit":
        return TextSplit({name: value.to(device) for name, value in self.features.items()}, self.labels.to(device))

    def rows(self, indices: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(features, labels) of `indices`, trimmed to the longest example among them."""
        features = {name: value.index_select(0, indices) for name, value in self.features.items()}
        return trim(features), self.labels.index_select(0, indices)


def trim(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The features cut to the longest sequence of the batch (its padding columns add nothing but time)."""
    length = int(features["attention_mask"].sum(dim=1).max())
    return {name: value[:, :length] for name, value in features.items()}


@dataclass
class GlueData:
    """A GLUE task in memory: train / val / test (dev.tsv) splits and the task's layout."""

    task: str
    layout: GlueLayout
    train: TextSplit
    val: TextSplit
    test: TextSplit
    origin: dict = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return self.layout.num_labels

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's token ids (the test split's padded length): what `export` checks an export on."""
        return tuple(self.test.features["input_ids"].shape[1:])

    @property
    def num_classes(self) -> int:
        return self.layout.num_labels

    def to(self, device) -> "GlueData":
        return GlueData(self.task, self.layout, self.train.to(device), self.val.to(device), self.test.to(device),
                        self.origin)


def is_saved_dataset(data_dir: str | None) -> bool:
    """Whether data_dir is a `datasets` DatasetDict written by `save_to_disk` (it holds dataset_dict.json)."""
    return data_dir is not None and (Path(data_dir).expanduser() / "dataset_dict.json").is_file()


def read_saved_dataset(data_dir: str, task: str) -> dict[str, tuple[list[tuple[str, ...]], list[str]]]:
    """{"train": (texts, labels), "dev": (texts, labels)} of a saved DatasetDict's train and validation splits,
    labels spelled as in the TSV layout; ConfigError (one line) for a missing package, split, column or a label
    outside the task's (-1: the hidden labels of GLUE's test split)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"data.data_dir {data_dir!r} is a Hugging Face `datasets` dataset saved to disk; reading it "
                          f"needs the datasets package: {DATASETS_HINT}") from None
    layout, root = GLUE_LAYOUTS[task], Path(data_dir).expanduser()
    saved = datasets.load_from_disk(str(root))
    found = {}
    for split, hub_split in (("train", "train"), ("dev", "validation")):
        if hub_split not in saved:
            raise ConfigError(f"data.data_dir {str(root)!r} is a saved dataset without a {hub_split!r} split (it has "
                              f"{', '.join(saved)}); GLUE task {task} needs train and validation")
        part = saved[hub_split]
        missing = [name for name in (*layout.hub_text_columns, "label") if name not in part.column_names]
        if missing:
            raise ConfigError(f"data.data_dir {str(root)!r}: the {hub_split} split's columns {part.column_names} lack "
                              f"{', '.join(map(repr, missing))}; {task} needs {', '.join(layout.hub_text_columns)} "
                              "and label")
        texts = list(zip(*(part[name] for name in layout.hub_text_columns)))
        labels = [_hub_label(root, hub_split, number, value, layout, task) for number, value in
                  enumerate(part["label"])]
        if not texts:
            raise ConfigError(f"data.data_dir {str(root)!r}: the {hub_split} split holds no examples")
        found[split] = (texts, labels)
    return found


def _hub_label(root: Path, split: str, number: int, value, layout: GlueLayout, task: str) -> str:
    """A saved dataset's label as the TSV spells it: the class name at its index, or the score as text."""
    if layout.labels is None:
        return str(float(value))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(layout.labels):
        raise ConfigError(f"data.data_dir {str(root)!r}: {split} row {number} has label {value!r}, not a class index "
                          f"0-{len(layout.labels) - 1} of {task}" + (" (-1 marks GLUE's hidden test labels)"
                                                                     if value == -1 else ""))
    return layout.labels[value]


def glue_file(data_dir: str | None, task: str, split: str) -> Path:
    """DIR/{split}.tsv, or DIR/<GLUE title>/{split}.tsv (the GLUE download's layout); ConfigError if neither."""
    if data_dir is None:
        raise ConfigError(f"data.data_dir is unset: name the directory holding {task}'s train.tsv and dev.tsv")
    root = Path(data_dir).expanduser()
    for path in (root / f"{split}.tsv", root / GLUE_LAYOUTS[task].title / f"{split}.tsv"):
        if path.is_file():
            return path
    raise ConfigError(f"data.data_dir {str(root)!r} holds no {split}.tsv (nor {GLUE_LAYOUTS[task].title}/{split}.tsv) "
                      f"for GLUE task {task}")


def read_glue_tsv(path: Path, task: str) -> tuple[list[tuple[str, ...]], list[str]]:
    """(texts per row, label per row) of a GLUE TSV in `task`'s layout; ConfigError (one line) for a file whose
    columns or labels are not the layout's."""
    layout = GLUE_LAYOUTS[task]
    lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    if layout.columns is None:
        header = lines[0].split("\t") if lines else []
        missing = [name for name in (*layout.text_columns, layout.label_column) if name not in header]
        if missing:
            raise ConfigError(f"{path} is not in GLUE's {layout.title} layout: its header {header!r} lacks "
                              f"{', '.join(map(repr, missing))}; {task} needs {layout.describe()}")
        positions = [header.index(name) for name in layout.text_columns]
        label_at, body, first = header.index(layout.label_column), lines[1:], 2
    else:
        positions, label_at, body, first = list(layout.text_columns), layout.label_column, lines, 1
    width = len(header) if layout.columns is None else layout.columns
    texts, labels = [], []
    for number, line in enumerate(body, start=first):
        cells = line.split("\t")
        if len(cells) != width:
            raise ConfigError(f"{path} line {number} has {len(cells)} tab-separated columns, not {width}: {task} "
                              f"needs {layout.describe()}")
        label = cells[label_at].strip()
        _check_label(path, number, label, layout, task)
        texts.append(tuple(cells[position] for position in positions))
        labels.append(label)
    if not texts:
        raise ConfigError(f"{path} holds no examples")
    return texts, labels


def _check_label(path: Path, number: int, label: str, layout: GlueLayout, task: str) -> None:
    if layout.labels is None:
        try:
            float(label)
            return
        except ValueError:
            raise ConfigError(f"{path} line {number}: {task}'s score {label!r} is not a number") from None
    if label not in layout.labels:
        raise ConfigError(f"{path} line {number}: label {label!r} is not one of {task}'s labels "
                          f"{', '.join(layout.labels)}")


def encode(tokenizer, texts: list[tuple[str, ...]], labels: list[str], layout: GlueLayout,
           max_length: int) -> TextSplit:
    """Token tensors of `texts` (padded to the longest, at most `max_length` tokens) and label tensors."""
    columns = list(zip(*texts))
    encoded = tokenizer(list(columns[0]), list(columns[1]) if len(columns) > 1 else None, truncation=True,
                        max_length=max_length, padding="longest", return_tensors="pt")
    features = {name: encoded[name].long() for name in ("input_ids", "attention_mask", "token_type_ids")
                if name in encoded}
    if layout.labels is None:
        targets = torch.tensor([float(label) for label in labels], dtype=torch.float32)
    else:
        targets = torch.tensor([layout.labels.index(label) for label in labels], dtype=torch.long)
    return TextSplit(features, targets)


def load_glue(task: str, data_config, tokenizer, max_length: int) -> GlueData:
    """The GLUE task `task` from data_config.data_dir, tokenized; validation held out of train.tsv (see the
    module docstring)."""
    layout = GLUE_LAYOUTS[task]
    if is_saved_dataset(data_config.data_dir):
        splits = read_saved_dataset(data_config.data_dir, task)
        (train_texts, train_labels), (dev_texts, dev_labels) = splits["train"], splits["dev"]
        train_path = Path(data_config.data_dir).expanduser()
        origin = {"dataset": str(train_path), "train": "train", "dev": "validation"}
    else:
        train_path, dev_path = glue_file(data_config.data_dir, task, "train"), glue_file(data_config.data_dir, task,
                                                                                          "dev")
        train_texts, train_labels = read_glue_tsv(train_path, task)
        dev_texts, dev_labels = read_glue_tsv(dev_path, task)
        origin = {"train": str(train_path), "dev": str(dev_path)}
    held_out = data_config.validation_size
    if held_out >= len(train_texts):
        raise ConfigError(f"data.validation_size {held_out} leaves no training examples: {train_path} holds "
                          f"{len(train_texts)}")
    keep = len(train_texts) - held_out
    if data_config.train_size is not None:
        keep = min(keep, data_config.train_size)
    return GlueData(
        task=task, layout=layout,
        train=encode(tokenizer, train_texts[:keep], train_labels[:keep], layout, max_length),
        val=encode(tokenizer, train_texts[-held_out:], train_labels[-held_out:], layout, max_length),
        test=encode(tokenizer, dev_texts, dev_labels, layout, max_length),
        origin=origin,
    )
