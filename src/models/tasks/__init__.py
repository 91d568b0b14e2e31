"""LightningModules: one per kind of task, each holding a plain net."""
from src.models.tasks.sequence_regression import SequenceRegressionTask

__all__ = ["SequenceRegressionTask"]
