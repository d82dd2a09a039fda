"""Federated MNIST with PyTorch on Pollen."""
