"""ServerApp: the app that drives a run (Flower's ``ServerApp`` with ``@app.main()``).

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        result = FedAvg().start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                                num_rounds=context.run_config["num-server-rounds"])
        context.save_artefact("final_model.npz", result.arrays)

``run_serverapp`` is what ``python -m pollen._runner serverapp`` calls: it asks the SuperLink
for the run, runs the app's main, and finishes the run completed or failed with the reason.
"""

from __future__ import annotations

import hashlib
import io
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Union

import numpy as np

from ._appio import AppIoError
from ._chunks import CHUNK_SIZE, chunk_id, pieces
from ._serverappio import ServerAppIo
from ._wire import config_from_wire
from .context import Context, resources_from_env
from .errors import PollenError, describe
from .grid import Grid
from .message import SERVER_NODE_ID
from .records import ArrayRecord

Main = Callable[[Grid, Context], None]


class ServerApp:
    """One main function, registered with ``@app.main()``."""

    def __init__(self) -> None:
        self._main: Optional[Main] = None

    def main(self) -> Callable[[Main], Main]:
        def decorator(fn: Main) -> Main:
            if not callable(fn):
                raise TypeError("The main function must be a function")
            if self._main is not None:
                raise ValueError("A main function is already registered")
            self._main = fn
            return fn

        return decorator

    def __call__(self, grid: Grid, context: Context) -> None:
        if self._main is None:
            raise PollenError("INVALID_ARGUMENT", "Register a main function first: @app.main()")
        self._main(grid, context)


def npz_bytes(arrays: ArrayRecord) -> bytes:
    """An ArrayRecord as NumPy's .npz (what numpy.load and `pollen pull` users open)."""
    out = io.BytesIO()
    np.savez(out, **{name: a.numpy() for name, a in arrays.items()})
    return out.getvalue()


@dataclass
class ServerContext(Context):
    """A ServerApp's Context: also keeps the outputs of the run on the SuperLink."""

    _save: Optional[Callable[[str, bytes], Dict[str, object]]] = field(default=None, repr=False)

    def save_artefact(self, name: str, data: Union[bytes, str, ArrayRecord]) -> Dict[str, object]:
        """Keep ``data`` as the run's artefact ``name`` (``pollen pull RUN_ID`` downloads it); an
        ArrayRecord is saved as .npz. Returns its name, size and ``sha256:HEX``."""
        if isinstance(data, ArrayRecord):
            data = npz_bytes(data)
        elif isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise PollenError("INVALID_ARGUMENT", "An artefact is bytes, a str or an ArrayRecord")
        if self._save is None:
            raise PollenError("ARTEFACTS_UNAVAILABLE", "This context keeps no artefacts")
        return self._save(name, bytes(data))


def _saver(sio: ServerAppIo) -> Callable[[str, bytes], Dict[str, object]]:
    def save(name: str, data: bytes) -> Dict[str, object]:
        view = memoryview(data)
        parts = pieces(view, CHUNK_SIZE) if len(view) else []
        ids = [chunk_id(p) for p in parts]
        if parts:
            sio.chunks.push(list(zip(ids, parts)))
        digest = f"sha256:{hashlib.sha256(view).hexdigest()}"
        sio.save_artefact(name, digest, len(view), ids)
        return {"name": name, "size": len(view), "hash": digest}

    return save


def _reason(e: BaseException) -> str:
    return describe(e)[:1000]


def run_serverapp(url: str, token: str, run_id: str, app_ref: str, env: Optional[Dict[str, str]] = None) -> int:
    """Run the ServerApp ``app_ref`` for ``run_id``; 0 when the run completed (or was stopped)."""
    import os

    from ._remote_grid import RemoteGrid
    from ._runner import AppLoadError, load_app

    sio = ServerAppIo(url, token, run_id)
    try:
        info = sio.get_run_info()
        resources = resources_from_env(os.environ if env is None else env)
        context = ServerContext(
            run_id=run_id,
            node_id=SERVER_NODE_ID,
            run_config=config_from_wire(info.run.run_config),
            gpus=list(resources["gpus"]),  # type: ignore[call-overload]
            resources=resources,
            _save=_saver(sio),
        )
        grid = RemoteGrid(sio, run_id)
        try:
            # Loaded here: a module without its ServerApp fails the run with that reason and code.
            app = load_app(app_ref, ServerApp, "serverapp")
            app(grid, context)
            sub_status, reason = "completed", ""
        except BaseException as e:  # noqa: BLE001 - every failure of the app fails the run with its reason
            if isinstance(e, KeyboardInterrupt):
                raise
            if grid.stopped:
                return 0
            if isinstance(e, AppLoadError):
                reason = f"{e.code}: {e.reason}"
            else:
                traceback.print_exc(file=sys.stderr)
                reason = _reason(e)
            sub_status = "failed"
        try:
            sio.finish_run(sub_status, reason[:1000])
        except AppIoError:
            pass
        return 0 if sub_status == "completed" else 1
    finally:
        sio.close()
