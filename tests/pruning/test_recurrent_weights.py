"""prunable_weights on recurrent modules: weight matrices of every layer and direction, by module type."""

from torch import nn

from ticketlab.pruning import prunable_weights


def test_lstm_gru_rnn_weight_matrices_and_shared_parameters_once():
    model = nn.ModuleDict({"lstm": nn.LSTM(3, 4, num_layers=2, bidirectional=True), "gru": nn.GRU(8, 5),
                           "rnn": nn.RNN(5, 2), "embed": nn.Embedding(7, 4), "out": nn.Linear(4, 7)})
    model["out"].weight = model["embed"].weight  # tied: one Parameter, listed once under its first name
    names = list(prunable_weights(model))
    lstm = [f"lstm.weight_{kind}_l{layer}{suffix}" for layer in (0, 1) for suffix in ("", "_reverse")
            for kind in ("ih", "hh")]
    assert names == lstm + ["gru.weight_ih_l0", "gru.weight_hh_l0", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
                            "embed.weight"]
    parameters = dict(model.named_parameters())
    assert all(prunable_weights(model)[name] is parameters[name] for name in names)
