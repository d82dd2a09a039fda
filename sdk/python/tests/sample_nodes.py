"""A ClientApp for strategy and ServerApp tests: it adds ``add`` to every array it is sent."""

from __future__ import annotations

import numpy as np
from fake_serverappio import SDK  # noqa: F401 - puts the SDK on the path

from pollen import ArrayRecord, ClientApp, MetricRecord, RecordDict


def node(add: float, examples, seen=None, fail: bool = False) -> ClientApp:
    """Trains by adding ``add`` (train-loss = add), evaluates to accuracy add / 10 and the list
    [add, 2·add]; records the train configs in ``seen``; ``fail`` raises MemoryError instead."""
    app = ClientApp()

    @app.train()
    def train(msg, context):
        if fail:
            raise MemoryError("out of memory")
        if seen is not None:
            seen.append(dict(msg.content["config"]))
        arrays = ArrayRecord({k: a.numpy() + np.asarray(add, a.numpy().dtype) for k, a in msg.content["arrays"].items()})
        return RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": examples, "train-loss": add})})

    @app.evaluate()
    def evaluate(msg, context):
        metrics = {"num-examples": examples, "accuracy": add / 10, "pair": [add, 2 * add]}
        return RecordDict({"metrics": MetricRecord(metrics)})

    return app
