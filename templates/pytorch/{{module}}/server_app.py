"""The ServerApp: runs once per run, next to the SuperLink (or in `pollen simulate`). FedAvg
samples the nodes, sends them the global model, averages their replies, has them evaluate it, and
reports each round with the run.
"""

from pollen import ArrayRecord, Context, FedAvg, Grid, ServerApp

from {{module}}.task import new_model

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
        initial_arrays=ArrayRecord(new_model(int(run["seed"])).state_dict()),
        num_rounds=int(run["num-server-rounds"]),
    )
    state_dict = result.arrays.to_torch_state_dict()
    print(f"final model: {sum(t.numel() for t in state_dict.values())} parameters", flush=True)
