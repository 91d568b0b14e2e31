"""Plain nn.Modules, one architecture per file; none of them imports Lightning or the datasets."""

from src.models.nets.autoregressive_rnn import AutoregressiveRNN
from src.models.nets.encdec_ad import EncDecAD
from src.models.nets.recurrent import recurrent_layers
from src.models.nets.repeat_vector import RepeatVectorAutoencoder
from src.models.nets.seq2seq import Seq2Seq
from src.models.nets.stacked_lstm import StackedLSTMAutoencoder

__all__ = [
    "AutoregressiveRNN",
    "EncDecAD",
    "RepeatVectorAutoencoder",
    "Seq2Seq",
    "StackedLSTMAutoencoder",
    "recurrent_layers",
]
