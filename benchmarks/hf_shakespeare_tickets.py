"""A fine-tuning ticket curve on data available offline: a small BERT pre-trained by ticketlab's `mlm` task on Tiny
Shakespeare, then fine-tuned with the `glue` task on a classification built from the same text in SST-2's layout:
is a speech spoken by a character of a comedy (The Taming of the Shrew, Measure for Measure, The Winter's Tale, The
Tempest) or of a history / tragedy (Richard III, Romeo and Juliet, Coriolanus, ...)? IMP rewinds to the pre-trained
weights θ_pre (Chen et al. 2020); random pruning and random reinitialization are the controls.

    python benchmarks/hf_shakespeare_tickets.py [--text /work/shared/data/tinyshakespeare.txt] [--out DIR]

Everything is built locally (a word-level tokenizer trained on the text, the model, the TSV files); nothing is
downloaded. Prints the test accuracy (dev split) of each variant at each sparsity and the command that made it.
With --out, a killed run resumes: the random model, the pre-trained model and the TSV files are made once, the
pre-training checkpoints into OUT/pretrain_job, and the fine-tuning is an ordinary ticketlab run.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

COMEDY = {"PETRUCHIO", "DUKE VINCENTIO", "ISABELLA", "LEONTES", "LUCIO", "TRANIO", "ANGELO", "KATHARINA", "CAMILLO",
          "HORTENSIO", "BAPTISTA", "AUTOLYCUS", "Provost", "Clown", "GRUMIO", "PROSPERO", "LUCENTIO", "POLIXENES",
          "PAULINA", "BIONDELLO", "MIRANDA", "GONZALO", "HERMIONE", "BIANCA"}
HISTORY_OR_TRAGEDY = {"GLOUCESTER", "ROMEO", "MENENIUS", "CORIOLANUS", "KING RICHARD III", "JULIET", "SICINIUS",
                      "KING EDWARD IV", "QUEEN ELIZABETH", "WARWICK", "KING RICHARD II", "BRUTUS", "BUCKINGHAM",
                      "HENRY BOLINGBROKE", "Nurse", "QUEEN MARGARET", "DUCHESS OF YORK", "KING HENRY VI", "COMINIUS",
                      "CLARENCE", "BENVOLIO", "MERCUTIO"}


def speeches(text: str) -> list[tuple[str, str]]:
    """(speaker, speech on one line) of each block 'SPEAKER:\\nlines' of the play text."""
    found = []
    for block in text.split("\n\n"):
        lines = block.strip().split("\n")
        if len(lines) > 1 and lines[0].endswith(":"):
            found.append((lines[0][:-1], " ".join(line.strip() for line in lines[1:]).replace("\t", " ")))
    return found


def write_model(root: Path, text: str, vocab: int) -> Path:
    """A word-level tokenizer trained on `text` and a random-weight BERT (2 x 128) in root/random (kept when there)."""
    if (root / "random" / "config.json").is_file():
        return root / "random"
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(text.splitlines(), trainers.WordLevelTrainer(vocab_size=vocab, special_tokens=specials))
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=backend.get_vocab_size(), hidden_size=128, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=512, max_position_embeddings=128)
                    ).save_pretrained(root / "random")
    tokenizer.save_pretrained(root / "random")
    return root / "random"


def pretrain(random_dir: Path, text_dir: Path, out_dir: Path, steps: int) -> Path:
    """The mlm task's dense training of the random BERT on the text, saved as a pre-trained model in `out_dir`
    (kept when there; checkpointed into out_dir's sibling pretrain_job, so a killed pre-training resumes)."""
    from transformers import AutoTokenizer

    from ticketlab.config import ExperimentConfig
    from ticketlab.pruning import full_masks
    from ticketlab.tasks import load_task
    from ticketlab.tasks.base import load_task_data

    task = load_task("mlm")
    config = ExperimentConfig().replace(**{
        "task": "mlm", "model.name": "pretrained", "data.name": "text", "data.data_dir": str(text_dir),
        "mlm.model_dir": str(random_dir), "mlm.max_length": 64, "train.optimizer": "adamw", "train.lr": 1e-3,
        "train.weight_decay": 0.01, "train.batch_size": 32, "train.steps": f"{steps}it",
        # an evaluation, and so a checkpoint, every tenth of the steps
        "train.eval_every": f"{max(1, steps // 10)}it", "train.warmup": "50it"})
    if (out_dir / "config.json").is_file():
        return out_dir
    data = load_task_data(task, config)
    model = task.initialize(task.build_model(config, data), config, 0)
    job_dir = out_dir.parent / "pretrain_job"
    job_dir.mkdir(parents=True, exist_ok=True)
    result = task.train(model, data, config.train, masks=full_masks(task.prunable(model)), data_seed=0,
                        job_dir=job_dir, checkpoint_interval_s=60.0)
    print(f"pre-training (mlm, {steps} steps): test perplexity of masked tokens {result.final_test_metric:.1f}",
          flush=True)
    (job_dir / "pretraining.txt").write_text(f"{steps} steps; test perplexity {result.final_test_metric:.3f}\n")
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(random_dir).save_pretrained(out_dir)
    return out_dir


def write_classification(speech_list, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    labelled = [(speech, int(speaker in COMEDY)) for speaker, speech in speech_list
                if speaker in COMEDY or speaker in HISTORY_OR_TRAGEDY]
    for split, rows in (("train", [row for index, row in enumerate(labelled) if index % 5]),
                        ("dev", labelled[::5])):
        lines = ["sentence\tlabel"] + [f"{speech}\t{label}" for speech, label in rows]
        (directory / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default="/work/shared/data/tinyshakespeare.txt")
    parser.add_argument("--out", help="where the model, the files and the run go (default: a temporary directory)")
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--steps", default="3ep")
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--trials", type=int, default=1)
    args = parser.parse_args()
    import ticketlab

    root = Path(args.out or tempfile.mkdtemp(prefix="hf-shakespeare-"))
    text = Path(args.text).read_text(encoding="utf-8")
    (root / "text").mkdir(parents=True, exist_ok=True)
    if not (root / "text" / "tinyshakespeare.txt").is_file():
        (root / "text" / "tinyshakespeare.txt").write_text(text, encoding="utf-8")
    random_dir = write_model(root, text, vocab=3000)
    bert_dir = pretrain(random_dir, root / "text", root / "bert", args.pretrain_steps)
    glue_dir = write_classification(speeches(text), root / "comedy")
    config = ticketlab.ExperimentConfig().replace(**{
        "task": "glue", "model.name": "pretrained", "data.name": "sst2", "data.data_dir": str(glue_dir),
        "data.validation_size": 300, "glue.model_dir": str(bert_dir), "glue.max_length": 64,
        "train.optimizer": "adamw", "train.lr": 3e-4, "train.weight_decay": 0.01, "train.batch_size": 32,
        "train.steps": args.steps, "train.eval_every": "50it", "prune.scope": "global", "prune.rate": 0.4,
        "prune.levels": args.levels, "prune.rewind": "0it", "trials": args.trials,
        "variants": ("iterative_reset", "random_pruning", "iterative_reinit")})
    result = ticketlab.find_tickets(config, root=str(root / "runs"), report=False, workers=1, progress=True)
    table: dict[tuple[str, str], list[float]] = {}
    for row in csv.DictReader(result.results_csv.open()):
        table.setdefault((row["variant"], row["level"]), []).append(float(row["early_stop_test_metric"]))
    remaining = {row["level"]: float(row["weights_remaining_percent"]) for row in csv.DictReader(result.results_csv.open())}
    print("test accuracy (dev split) at the early-stopping point, mean over trials:")
    print("| weights remaining | IMP, rewound to θ_pre | random pruning | random reinit |")
    print("| ---: | ---: | ---: | ---: |")
    for level in sorted(remaining, key=int):
        cells = [table.get((variant, level)) for variant in ("iterative_reset", "random_pruning", "iterative_reinit")]
        print(f"| {remaining[level]:.1f}% | " + " | ".join(
            f"{100 * sum(cell) / len(cell):.1f}%" if cell else "" for cell in cells) + " |")
    print(f"run directory: {result.run_dir}")
    print("reproduce: python benchmarks/hf_shakespeare_tickets.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
