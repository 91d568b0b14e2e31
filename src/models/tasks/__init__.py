"""LightningModules: one per kind of task, each holding a plain net."""

from src.models.tasks.anomaly_detection import AnomalyDetectionTask
from src.models.tasks.sequence_regression import SequenceRegressionTask
from src.models.tasks.token_seq2seq import TokenSeq2SeqTask

__all__ = ["AnomalyDetectionTask", "SequenceRegressionTask", "TokenSeq2SeqTask"]
