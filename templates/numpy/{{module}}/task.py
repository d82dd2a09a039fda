"""What this app learns, and from which data: logistic regression on a synthetic two-class
dataset, in NumPy. Replace it with your own model and data; the ClientApp (client_app.py) and the
ServerApp (server_app.py) only call what this file defines.

Every node makes the same dataset from the run's `seed` and keeps its partition: the examples
whose index modulo `num-partitions` is its `partition-id` (both in the node config, set by the
site operator, or by `pollen simulate` for its virtual nodes). A real site would load its own
data here instead, e.g. from a path in its node config.
"""

import numpy as np

NUM_FEATURES = 8
NUM_EXAMPLES = 4000
EVAL_FRACTION = 0.2


def initial_model() -> dict[str, np.ndarray]:
    """The global model before the first round: all zeros."""
    return {"weights": np.zeros(NUM_FEATURES, dtype=np.float32), "bias": np.zeros(1, dtype=np.float32)}


def load_partition(partition_id: int, num_partitions: int, seed: int):
    """This node's ((x, y) for training, (x, y) for evaluation)."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"node config partition-id {partition_id} is not in 0..{num_partitions - 1}")
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(NUM_FEATURES + 1)
    x = rng.standard_normal((NUM_EXAMPLES, NUM_FEATURES))
    y = (x @ truth[:-1] + truth[-1] + 0.5 * rng.standard_normal(NUM_EXAMPLES) > 0).astype(np.float64)
    mine = np.arange(partition_id, NUM_EXAMPLES, num_partitions)
    n_eval = round(len(mine) * EVAL_FRACTION)
    train, held_out = mine[: len(mine) - n_eval], mine[len(mine) - n_eval :]
    return (x[train], y[train]), (x[held_out], y[held_out])


def _probabilities(model: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = x @ model["weights"].astype(np.float64) + float(model["bias"][0])
    return 1.0 / (1.0 + np.exp(-z))


def _loss(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def train(model, data, epochs: int, batch_size: int, learning_rate: float, seed: int):
    """Mini-batch gradient descent from `model`: (the new model, the last epoch's mean loss)."""
    x, y = data
    weights = model["weights"].astype(np.float64)
    bias = float(model["bias"][0])
    rng = np.random.default_rng(seed)
    loss = float("nan")
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            error = 1.0 / (1.0 + np.exp(-(x[batch] @ weights + bias))) - y[batch]
            weights -= learning_rate * (x[batch].T @ error) / len(batch)
            bias -= learning_rate * float(error.mean())
        new = {"weights": weights.astype(np.float32), "bias": np.array([bias], dtype=np.float32)}
        loss = _loss(_probabilities(new, x), y)
    return new, loss


def evaluate(model, data) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model on the data."""
    x, y = data
    p = _probabilities(model, x)
    return _loss(p, y), float(np.mean((p > 0.5) == (y > 0.5)))
