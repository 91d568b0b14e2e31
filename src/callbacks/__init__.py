"""Callbacks that watch training and show it in TensorBoard."""
from src.callbacks.prediction_figure import PredictionFigure

__all__ = ["PredictionFigure"]
