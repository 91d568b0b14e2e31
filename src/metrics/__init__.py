"""torchmetrics Metrics the lab needs and torchmetrics lacks."""
from src.metrics.skill import SkillScore

__all__ = ["SkillScore"]
