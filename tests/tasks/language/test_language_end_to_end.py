"""The WikiText-2 and PTB presets end to end through the command line, on generated files in the real layouts:
the Zaremba et al. recipe (epoch-based step decay, clipping, SGD), every lottery variant, rewinding, the report."""

import csv
import io
import zipfile

import pytest

from ticketlab import cli


def _write_corpus(directory, dataset, texts):
    directory.mkdir()
    if dataset == "wikitext2":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for split, text in texts.items():
                archive.writestr(f"wikitext-2/wiki.{split}.tokens", text)
        (directory / "wikitext-2-v1.zip").write_bytes(buffer.getvalue())
    else:
        for split, text in texts.items():
            (directory / f"ptb.{split}.txt").write_text(text)


@pytest.mark.parametrize("dataset", ["wikitext2", "ptb"])
def test_word_level_preset_runs_end_to_end(tmp_path, capsys, dataset, word_texts):
    _write_corpus(tmp_path / "data", dataset, word_texts)
    argv = ["find", "--preset", f"lstm_{dataset}_small", "--data-dir", str(tmp_path / "data"),
            "--root", str(tmp_path / "runs"), "--quiet", "--trials", "1", "--levels", "2", "--rewind", "2it",
            "--steps", "2ep", "--train.milestones", "1ep", "--train.eval_every", "1ep", "--model.hidden", "8,8",
            "--data.sequence_length", "5", "--train.batch_size", "2", "--workers", "1"]
    assert cli.main(argv) == 0
    output = capsys.readouterr().out
    assert "ppl" in output and "results:" in output
    results = next((tmp_path / "runs").glob(f"{dataset}_lstm_*")) / "results.csv"
    rows = list(csv.DictReader(results.open()))
    assert len(rows) == 6 * 3  # every variant x (dense + 2 levels)
    assert {row["metric"] for row in rows} == {"perplexity"}
    assert all(1 < float(row["early_stop_test_metric"]) < 1000 for row in rows)
    assert (results.parent / "report" / "lottery.png").stat().st_size > 1000
    assert "test perplexity" in (results.parent / "report" / "summary.md").read_text()
