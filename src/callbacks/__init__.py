"""Callbacks that watch training and show it in TensorBoard."""
from src.callbacks.checkpoint import LastAndBestCheckpoint
from src.callbacks.prediction_figure import PredictionFigure

__all__ = ["LastAndBestCheckpoint", "PredictionFigure"]
