"""The ClientApp: trains the global model on this node's partition, evaluates it on the
partition's held-out split.

Node config (set by the site operator, or by `pollen simulate` for its virtual nodes):
`partition-id`, `num-partitions`, and optionally `data-path` (a folder with mnist.npz).
It trains on `cuda` when the run was given a GPU (`context.gpus`) and PyTorch sees one.
"""

import torch

from pollen import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict
from pytorch_mnist.task import load_partition, new_model, test, train

app = ClientApp()


def _device(context: Context) -> torch.device:
    cpus = context.resources.get("cpu")
    if cpus:
        torch.set_num_threads(int(cpus))
    if context.gpus and torch.cuda.is_available():
        return torch.device("cuda")  # CUDA_VISIBLE_DEVICES holds only this run's GPUs
    return torch.device("cpu")


def _partition(context: Context):
    node = context.node_config
    return load_partition(
        int(node.get("partition-id", 0)),
        int(node.get("num-partitions", 1)),
        int(context.run_config["seed"]),
        node.get("data-path"),
        str(context.run_config.get("partitioning", "iid")),
    )


def _model(msg: Message, seed: int):
    model = new_model(seed)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    return model


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    run = context.run_config
    config = msg.content["config"]
    device = _device(context)
    seed = int(run["seed"])
    model = _model(msg, seed)
    train_data, _ = _partition(context)
    # A different but reproducible batch order per node and round.
    order_seed = seed * 1_000_003 + int(config.get("server-round", 0)) * 7919 + int(context.node_config.get("partition-id", 0))
    loss, accuracy = train(
        model,
        train_data,
        epochs=int(run["local-epochs"]),
        batch_size=int(run["batch-size"]),
        lr=float(config["learning-rate"]),
        seed=order_seed,
        device=device,
    )
    metrics = MetricRecord({"num-examples": len(train_data[1]), "train-loss": loss, "train-accuracy": accuracy})
    arrays = ArrayRecord(model.to("cpu").state_dict())
    return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    device = _device(context)
    model = _model(msg, int(context.run_config["seed"]))
    _, eval_data = _partition(context)
    loss, accuracy = test(model, eval_data, device)
    metrics = MetricRecord({"num-examples": len(eval_data[1]), "loss": loss, "accuracy": accuracy})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
