"""What this app learns, and from which data: a small PyTorch network (8 → 32 → 4) that tells
apart four classes of a synthetic dataset. Replace it with your own model and data; the ClientApp
(client_app.py) and the ServerApp (server_app.py) only call what this file defines.

Every node makes the same dataset from the run's `seed` and keeps its partition: the examples
whose index modulo `num-partitions` is its `partition-id` (both in the node config, set by the
site operator, or by `pollen simulate` for its virtual nodes). A real site would load its own
data here instead, e.g. from a path in its node config.
"""

import torch
from torch import nn
from torch.nn import functional as F

NUM_FEATURES = 8
NUM_CLASSES = 4
NUM_EXAMPLES = 4000
EVAL_FRACTION = 0.2


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(NUM_FEATURES, 32)
        self.out = nn.Linear(32, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(x)))


def new_model(seed: int) -> Net:
    """The same initial weights for the same seed, wherever the model is made."""
    torch.manual_seed(seed)
    return Net()


def load_partition(partition_id: int, num_partitions: int, seed: int):
    """This node's ((x, y) for training, (x, y) for evaluation): four Gaussian clusters."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"node config partition-id {partition_id} is not in 0..{num_partitions - 1}")
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(NUM_CLASSES, NUM_FEATURES, generator=g)
    y = torch.randint(0, NUM_CLASSES, (NUM_EXAMPLES,), generator=g)
    x = centres[y] + torch.randn(NUM_EXAMPLES, NUM_FEATURES, generator=g)
    mine = torch.arange(partition_id, NUM_EXAMPLES, num_partitions)
    n_eval = round(len(mine) * EVAL_FRACTION)
    train, held_out = mine[: len(mine) - n_eval], mine[len(mine) - n_eval :]
    return (x[train], y[train]), (x[held_out], y[held_out])


def train(net: Net, data, epochs: int, batch_size: int, lr: float, seed: int, device: torch.device) -> float:
    """SGD for `epochs` over the data in a seeded order; the mean training loss."""
    net.to(device).train()
    x, y = data
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    total, seen = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
            seen += len(yb)
    return total / max(seen, 1)


@torch.no_grad()
def test(net: Net, data, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model on the data."""
    net.to(device).eval()
    x, y = data[0].to(device), data[1].to(device)
    logits = net(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()
