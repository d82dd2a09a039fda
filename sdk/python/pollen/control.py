"""Start and follow a run from Python (a notebook, a script): ``pollen.run(...)``.

    run = pollen.run("apps/pytorch-mnist", "study", run_config={"num-server-rounds": 5})
    run.wait()
    run.metrics          # {1: {"train-loss": 0.41, "accuracy": 0.87}, 2: {...}, ...}
    run.pull("models")   # the artefacts its ServerApp saved

It drives the ``pollen`` command with ``--json``: the build, the connection (``pollen config
superlink add``) and the credentials are exactly the command line's — your own login
(``pollen login``, refreshed when due), an admin certificate, or a service-account token — and
no secret passes through Python.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from .errors import PollenError

ConfigValue = Union[int, float, str, bool]
FINISHED = "finished"


def pollen_command(env: Mapping[str, str] = os.environ) -> List[str]:
    """How to run ``pollen``, as a kit's scripts find it: POLLEN_BIN (bin/pollen.js, run by
    POLLEN_NODE or node, or a ``pollen`` executable), else the Pollen this SDK ships in, else PATH."""
    here = os.path.dirname(os.path.abspath(__file__))
    # The SDK is <pollen>/sdk/python/pollen; the command is <pollen>/bin/pollen.js (built: dist/).
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    shipped = os.path.join(root, "bin", "pollen.js")
    built = os.path.isdir(os.path.join(root, "dist"))
    given = env.get("POLLEN_BIN", "").strip() or (shipped if built else "") or shutil.which("pollen", path=env.get("PATH")) or ""
    if not given:
        raise PollenError(
            "FILE_NOT_FOUND",
            "The pollen command is not installed where this Python can find it",
            "Set POLLEN_BIN to Pollen's bin/pollen.js (or a pollen executable), or put pollen on PATH.",
        )
    if not given.endswith(".js"):
        return [given]
    node = env.get("POLLEN_NODE", "").strip() or shutil.which("node", path=env.get("PATH")) or "node"
    return [node, given]


def _pairs(run_config: Mapping[str, ConfigValue]) -> List[str]:
    out = []
    for key, value in run_config.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        elif isinstance(value, str):
            text = value
        else:
            raise PollenError(
                "INVALID_ARGUMENT",
                f"run_config[{key!r}] is a {type(value).__name__}: a run config value is a number, a string or a boolean",
            )
        out += ["--run-config", f"{key}={text}"]
    return out


class Cli:
    """One ``pollen ... --json`` call per method; a failure raises PollenError with its code and hint."""

    def __init__(
        self,
        superlink: Optional[str] = None,
        config: Optional[str] = None,
        command: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.command = list(command) if command else pollen_command(self.env)
        self.flags = (["--superlink", superlink] if superlink else []) + (["--config", config] if config else [])

    def __call__(self, *args: str) -> Dict[str, Any]:
        argv = [*self.command, *args, *self.flags, "--json"]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env)
        try:
            doc = json.loads(done.stdout)
        except ValueError:
            raise PollenError(
                "INTERNAL",
                f"`pollen {args[0]}` printed no JSON document (exit code {done.returncode}): {done.stderr.strip()[-500:]}",
                "Check that POLLEN_BIN (or the pollen on PATH) is Pollen's command.",
            ) from None
        if not doc.get("ok", False):
            error = doc.get("error") or {}
            raise PollenError(error.get("code", "INTERNAL"), error.get("message", "pollen failed"), error.get("hint", ""))
        return doc


class Run:
    """A run on a SuperLink. ``status``, ``metrics``, ``rounds`` and ``artefacts`` ask the
    SuperLink each time they are read; ``wait()`` follows the run until it finishes."""

    def __init__(self, run_id: str, federation: str, cli: Cli) -> None:
        self.run_id = run_id
        self.federation = federation
        self._cli = cli

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, federation={self.federation!r})"

    def details(self) -> Dict[str, Any]:
        """The run, its rounds and artefacts, as ``pollen list --run-id ID --json`` shows them."""
        return self._cli("list", self.federation, "--run-id", self.run_id)

    @property
    def status(self) -> str:
        """``pending``, ``starting``, ``running``, or ``finished:completed|failed|stopped``."""
        run = self.details()["run"]
        return f"{run['status']}:{run['subStatus']}" if run.get("subStatus") else run["status"]

    @property
    def rounds(self) -> List[Dict[str, Any]]:
        """Per round: metrics, nodes, bytes moved, replies and failures."""
        return self.details()["rounds"]

    @property
    def metrics(self) -> Dict[int, Dict[str, float]]:
        """Round → the metrics its ServerApp reported (loss, accuracy, ...)."""
        return {r["round"]: r["metrics"] for r in self.rounds}

    @property
    def artefacts(self) -> List[Dict[str, Any]]:
        return self.details()["artefacts"]

    def logs(self) -> List[str]:
        """The run log so far (the ServerApp's output and the run's events)."""
        return [line["text"] for line in self._cli("log", self.run_id, self.federation)["lines"]]

    def wait(
        self,
        timeout: Optional[float] = None,
        poll: float = 2.0,
        on_round: Optional[Callable[[Dict[str, Any]], None]] = None,
        check: bool = True,
    ) -> "Run":
        """Wait until the run finishes; ``on_round`` sees each round as it is reported. A run
        that failed or was stopped raises PollenError RUN_FAILED with its reason (``check=False``
        returns instead); past ``timeout`` seconds, TimeoutError (the run goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while True:
            d = self.details()
            for r in d["rounds"][seen:]:
                if on_round:
                    on_round(r)
            seen = len(d["rounds"])
            run = d["run"]
            if run["status"] == FINISHED:
                if check and run.get("subStatus") != "completed":
                    raise PollenError(
                        "RUN_FAILED",
                        f"Run {self.run_id} {run.get('subStatus')}: {run.get('reason') or 'no reason given'}",
                        f"Read the run log: run.logs() or pollen log {self.run_id}.",
                    )
                return self
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Run {self.run_id} is still {run['status']} after {timeout:g} s (it goes on)")
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def stop(self) -> None:
        self._cli("stop", self.run_id, self.federation)

    def pull(self, output: Optional[str] = None) -> Dict[str, Any]:
        """Download the run's artefacts into ``output`` (default ./RUN_ID); what was written."""
        return self._cli("pull", self.run_id, self.federation, *(["--output", output] if output else []))


def run(
    app: str,
    federation: Optional[str] = None,
    *,
    superlink: Optional[str] = None,
    run_config: Optional[Mapping[str, ConfigValue]] = None,
    config: Optional[str] = None,
    wait: bool = False,
) -> Run:
    """Build the app folder ``app``, start a run of it on ``federation`` (a connection name, or a
    federation on ``superlink``/the default connection) with ``run_config`` overriding the app's
    defaults, and return the Run (finished first with ``wait=True``).

        run = pollen.run(".", "study", superlink="lab", run_config={"num-server-rounds": 3})
    """
    cli = Cli(superlink=superlink, config=config)
    args = ["run", os.fspath(app)] + ([federation] if federation else []) + _pairs(run_config or {})
    doc = cli(*args)
    started = Run(doc["runId"], doc["federation"], Cli(superlink=doc["superlink"], config=config, command=cli.command, env=cli.env))
    return started.wait() if wait else started
