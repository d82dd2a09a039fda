import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """The mnist package's digits converted by prepare_data.py, into a temporary folder."""
    out = tmp_path_factory.mktemp("data") / "mnist.npz"
    subprocess.run([sys.executable, str(HERE / "prepare_data.py"), "-o", str(out)], check=True)
    return out.parent
