"""The sequence lab: LSTM autoencoders and seq2seq models on synthetic sequences."""
