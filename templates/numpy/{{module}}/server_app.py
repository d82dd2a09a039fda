"""The ServerApp: runs once per run, next to the SuperLink (or in `pollen simulate`). FedAvg
samples the nodes, sends them the global model, averages their replies, has them evaluate it, and
reports each round with the run.
"""

from pollen import ArrayRecord, Context, FedAvg, Grid, ServerApp

from {{module}}.task import initial_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run = context.run_config
    strategy = FedAvg(
        fraction_train=float(run["fraction-train"]),
        fraction_evaluate=float(run["fraction-evaluate"]),
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_model()),
        num_rounds=int(run["num-server-rounds"]),
    )
    # The run log keeps this line (`pollen log RUN_ID`): the trained model, value by value.
    final = {name: [round(float(v), 4) for v in array.numpy().ravel()] for name, array in result.arrays.items()}
    print(f"final model {final}", flush=True)
