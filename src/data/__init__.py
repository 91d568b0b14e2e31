"""Synthetic datasets: pure generator functions and the LightningDataModules that serve them."""

from src.data.batch import SeqBatch
from src.data.module import SequenceDataModule, TensorBatchLoader

__all__ = ["SeqBatch", "SequenceDataModule", "TensorBatchLoader"]
