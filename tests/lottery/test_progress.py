"""The one progress-bar wrapper of the commands that train (transfer, stability)."""

from ticketlab.lottery.progress import NoBar, progress_bar


def test_no_bar_when_off_or_nothing_to_train(capsys):
    for bar in (progress_bar(100, enabled=False), progress_bar(0, label="transfer x")):
        assert isinstance(bar, NoBar)
        bar.update(5)
        bar.set_description("y")
        bar.close()
    assert capsys.readouterr() == ("", "")


def test_bar_counts_steps_on_stderr(capsys):
    bar = progress_bar(10, label="stability copies")
    bar.update(4)
    assert bar.bar.n == 4 and bar.bar.total == 10
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == "" and "stability copies" in captured.err
