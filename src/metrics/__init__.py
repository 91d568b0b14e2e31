"""torchmetrics Metrics the lab needs and torchmetrics lacks."""

from src.metrics.skill import SkillScore
from src.metrics.tokens import ExactMatch, TokenAccuracy

__all__ = ["ExactMatch", "SkillScore", "TokenAccuracy"]
