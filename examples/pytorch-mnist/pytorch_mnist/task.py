"""The model, the data and the training: plain PyTorch, nothing of Pollen.

A small CNN (conv 1→16 and 16→32, each 3×3 + max-pool, then 1568→32→10: about 55k parameters)
on the 10,000 digits of `data/mnist.npz` (made once by prepare_data.py). The split repeats
exactly for a seed: per digit class a seeded shuffle puts the first TEST_FRACTION into a test
set only the ServerApp scores on (no node holds it); the rest goes to the partitions, IID
(round-robin) or non-IID (DOMINANT_SHARE of digit d on partition d mod N, the rest round-robin);
each partition keeps its first EVAL_FRACTION for federated evaluation.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

TEST_FRACTION = 0.1
EVAL_FRACTION = 0.15
DOMINANT_SHARE = 0.8
PARTITIONINGS = ("iid", "non-iid")
DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "mnist.npz"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def new_model(seed: int) -> Net:
    """The initial model: the same weights for the same seed, wherever it is made."""
    torch.manual_seed(seed)
    return Net()


def _load(data_path: str | None) -> tuple[np.ndarray, np.ndarray]:
    return _read(Path(data_path) if data_path else DATA_FILE)


@lru_cache(maxsize=2)
def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The digits of a file, read once per process: every round's train and evaluate use them."""
    if path.is_dir():
        path = path / "mnist.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"no MNIST digits at {path}: run `python3 prepare_data.py` in examples/pytorch-mnist "
            "before building the app, or set the node config data-path to a folder with mnist.npz"
        )
    with np.load(path) as d:
        return d["x"], d["y"]


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return images, torch.from_numpy(y.astype(np.int64))


def _split(y: np.ndarray, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Indices of the server's test set, and per digit class the shuffled pool for the nodes."""
    rng = np.random.RandomState(seed)
    test, pool = [], []
    for digit in range(10):
        order = rng.permutation(np.flatnonzero(y == digit))
        n_test = round(len(order) * TEST_FRACTION)
        test.append(order[:n_test])
        pool.append(order[n_test:])
    return np.concatenate(test), pool


def load_test_data(seed: int, data_path: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out digits no node holds (about 1,000), for the ServerApp's evaluation."""
    x, y = _load(data_path)
    test, _ = _split(y, seed)
    return _tensors(x[test], y[test])


def _share(order: np.ndarray, digit: int, partition_id: int, num_partitions: int, partitioning: str) -> np.ndarray:
    """The images of one digit class that fall to this partition."""
    if partitioning == "iid" or num_partitions == 1:
        return order[partition_id::num_partitions]
    n_dominant = round(len(order) * DOMINANT_SHARE)
    dominant = order[:n_dominant] if digit % num_partitions == partition_id else order[:0]
    return np.concatenate([dominant, order[n_dominant:][partition_id::num_partitions]])


def load_partition(
    partition_id: int,
    num_partitions: int,
    seed: int,
    data_path: str | None = None,
    partitioning: str = "iid",
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """This node's (train, eval) tensors."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is not in 0..{num_partitions - 1}")
    if partitioning not in PARTITIONINGS:
        raise ValueError(f"partitioning {partitioning!r} is not one of {', '.join(PARTITIONINGS)}")
    x, y = _load(data_path)
    _, pool = _split(y, seed)
    mine = np.concatenate(
        [_share(order, digit, partition_id, num_partitions, partitioning) for digit, order in enumerate(pool)]
    )
    mine = np.random.RandomState(seed + partition_id).permutation(mine)
    n_eval = round(len(mine) * EVAL_FRACTION)
    return _tensors(x[mine[n_eval:]], y[mine[n_eval:]]), _tensors(x[mine[:n_eval]], y[mine[:n_eval]])


def train(
    net: Net,
    data: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
) -> tuple[float, float]:
    """Adam for `epochs` over the data in a seeded order; returns (mean loss, accuracy)."""
    net.to(device).train()
    x, y = data
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    total_loss, correct, seen = 0.0, 0, 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            optimizer.zero_grad()
            logits = net(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(yb)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def test(net: Net, data: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model on the data."""
    net.to(device).eval()
    x, y = data
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), 512):
        xb, yb = x[start : start + 512].to(device), y[start : start + 512].to(device)
        logits = net(xb)
        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return total_loss / max(len(y), 1), correct / max(len(y), 1)
