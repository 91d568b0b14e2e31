"""Plain nn.Modules, one architecture per file; none of them imports Lightning."""
from src.models.nets.repeat_vector import RepeatVectorAutoencoder

__all__ = ["RepeatVectorAutoencoder"]
