"""The ClientApp: runs on every site (or virtual node of `pollen simulate`). `train` improves the
global model on the node's partition; `evaluate` scores it on the partition's held-out examples.
It uses a GPU when the site gave the run one (`context.gpus`) and PyTorch sees it.
"""

import torch

from pollen import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict

from {{module}}.task import load_partition, new_model, test, train

app = ClientApp()


def _device(context: Context) -> torch.device:
    return torch.device("cuda" if context.gpus and torch.cuda.is_available() else "cpu")


def _partition(context: Context):
    node = context.node_config
    partition_id = int(node.get("partition-id", 0))
    return partition_id, load_partition(partition_id, int(node.get("num-partitions", 1)), int(context.run_config["seed"]))


def _model(msg: Message, context: Context):
    model = new_model(int(context.run_config["seed"]))
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    return model


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    run = context.run_config
    partition_id, (data, _) = _partition(context)
    model = _model(msg, context)
    server_round = int(msg.content["config"].get("server-round", 0))
    loss = train(
        model,
        data,
        epochs=int(run["local-epochs"]),
        batch_size=int(run["batch-size"]),
        lr=float(run["learning-rate"]),
        # Seeded by the partition, not the node id: a simulation and a real run draw the same order.
        seed=int(run["seed"]) * 1_000_003 + server_round * 7919 + partition_id,
        device=_device(context),
    )
    metrics = MetricRecord({"num-examples": len(data[1]), "train-loss": loss})
    arrays = ArrayRecord(model.to("cpu").state_dict())
    return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    _, (_, data) = _partition(context)
    loss, accuracy = test(_model(msg, context), data, _device(context))
    metrics = MetricRecord({"num-examples": len(data[1]), "loss": loss, "accuracy": accuracy})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
