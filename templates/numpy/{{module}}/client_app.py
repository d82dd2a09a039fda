"""The ClientApp: runs on every site (or virtual node of `pollen simulate`). `train` improves the
global model on the node's partition; `evaluate` scores it on the partition's held-out examples.
"""

from pollen import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict

from {{module}}.task import evaluate, load_partition, train

app = ClientApp()


def _partition(context: Context):
    node = context.node_config
    partition_id = int(node.get("partition-id", 0))
    return partition_id, load_partition(partition_id, int(node.get("num-partitions", 1)), int(context.run_config["seed"]))


def _model(msg: Message) -> dict:
    return {name: array.numpy() for name, array in msg.content["arrays"].items()}


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    run = context.run_config
    partition_id, (data, _) = _partition(context)
    server_round = int(msg.content["config"].get("server-round", 0))
    model, loss = train(
        _model(msg),
        data,
        epochs=int(run["local-epochs"]),
        batch_size=int(run["batch-size"]),
        learning_rate=float(run["learning-rate"]),
        # Seeded by the partition, not the node id: a simulation and a real run draw the same order.
        seed=int(run["seed"]) * 1_000_003 + server_round * 7919 + partition_id,
    )
    metrics = MetricRecord({"num-examples": len(data[1]), "train-loss": loss})
    return Message(content=RecordDict({"arrays": ArrayRecord(model), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    _, (_, data) = _partition(context)
    loss, accuracy = evaluate(_model(msg), data)
    metrics = MetricRecord({"num-examples": len(data[1]), "loss": loss, "accuracy": accuracy})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
