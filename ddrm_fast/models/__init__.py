"""Noise-prediction models: ``model(x_t, t) -> eps``."""
from .analytic import GaussianPriorEps

__all__ = ["GaussianPriorEps"]
