"""Callbacks that watch training and show it in TensorBoard."""

from src.callbacks.anomaly_views import AnomalyViews
from src.callbacks.attention_figure import AttentionFigure
from src.callbacks.checkpoint import LastAndBestCheckpoint
from src.callbacks.decoded_text import DecodedText
from src.callbacks.diagnosis import RunDiagnosis
from src.callbacks.prediction_figure import PredictionFigure
from src.callbacks.progress import TrainingProgressBar
from src.callbacks.saturation import HiddenSaturation

__all__ = [
    "AnomalyViews",
    "AttentionFigure",
    "DecodedText",
    "HiddenSaturation",
    "LastAndBestCheckpoint",
    "PredictionFigure",
    "RunDiagnosis",
    "TrainingProgressBar",
]
