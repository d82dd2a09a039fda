"""The ServerApp: FedAvg over `num-server-rounds`, every node starting from the same seeded
model; after each round it scores the global model on about 1,000 digits no node holds and
prints the round as one `POLLEN_METRICS {json}` line in the run log.
"""

import json
import time

import torch

from pollen import ArrayRecord, ConfigRecord, Context, FedAvg, Grid, MetricRecord, ServerApp
from pytorch_mnist.task import load_test_data, new_model, test

app = ServerApp()

METRICS_PREFIX = "POLLEN_METRICS "


@app.main()
def main(grid: Grid, context: Context) -> None:
    run = context.run_config
    seed = int(run["seed"])
    test_data = load_test_data(seed)
    started = time.monotonic()

    def global_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = new_model(seed)
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy = test(model, test_data, torch.device("cpu"))
        if server_round > 0:  # round 0 scores the initial model
            line = {"round": server_round, "centralizedLoss": loss, "centralizedAccuracy": accuracy}
            print(METRICS_PREFIX + json.dumps({**line, "seconds": round(time.monotonic() - started, 2)}), flush=True)
        return MetricRecord({"centralized-loss": loss, "centralized-accuracy": accuracy})

    strategy = FedAvg(
        fraction_train=float(run["fraction-train"]),
        fraction_evaluate=float(run["fraction-evaluate"]),
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(new_model(seed).state_dict()),
        train_config=ConfigRecord({"learning-rate": float(run["learning-rate"])}),
        num_rounds=int(run["num-server-rounds"]),
        evaluate_fn=global_evaluate,
    )
    final = result.arrays.to_torch_state_dict()
    print(f"final model: {sum(t.numel() for t in final.values())} parameters", flush=True)
