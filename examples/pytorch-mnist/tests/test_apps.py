"""The ClientApp and the ServerApp together through the SDK's in-memory grid: two nodes, FedAvg."""

import json
import tomllib
from pathlib import Path

import pytest

from pollen import Context
from pollen.grid import InMemoryGrid
from pytorch_mnist.client_app import app as client_app
from pytorch_mnist.server_app import app as server_app

HERE = Path(__file__).resolve().parent.parent


@pytest.fixture()
def run_config():
    config = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["pollen"]["app"]["config"]
    return {**config, "num-server-rounds": 2}


def test_two_nodes_reach_90_percent_on_digits_no_node_holds_in_two_rounds(run_config, digits, capsys, monkeypatch):
    monkeypatch.setattr("pytorch_mnist.task.DATA_FILE", digits / "mnist.npz")
    nodes = {"1": client_app, "2": client_app}
    node_configs = {
        str(i + 1): {"partition-id": i, "num-partitions": 2, "data-path": str(digits)} for i in range(2)
    }
    grid = InMemoryGrid(nodes, run_config=run_config, node_configs=node_configs)
    server_app(grid, Context(run_id="test", node_id="0", run_config=run_config))
    lines = [json.loads(l.split(" ", 1)[1]) for l in capsys.readouterr().out.splitlines() if l.startswith("POLLEN_METRICS ")]
    assert [l["round"] for l in lines] == [1, 2]
    assert lines[-1]["centralizedAccuracy"] >= 0.9
    assert lines[-1]["centralizedLoss"] < lines[0]["centralizedLoss"]
    # The rounds reported with the run: both nodes trained; the nodes' and the server's scores.
    assert [r["round"] for r in grid.rounds] == [1, 2]
    assert grid.rounds[-1]["node_ids"] == ["1", "2"]
    metrics = grid.rounds[-1]["metrics"]
    assert metrics["accuracy"] > 0.9 and metrics["centralized-accuracy"] == lines[-1]["centralizedAccuracy"]
    assert metrics["train-loss"] > 0
