"""Strategies for a Python ServerApp (Flower's message-API names): FedAvg, FedProx."""

from .fedavg import FedAvg
from .fedprox import FedProx
from .strategy import EvaluateFn, Failure, Result, Strategy

__all__ = ["EvaluateFn", "Failure", "FedAvg", "FedProx", "Result", "Strategy"]
