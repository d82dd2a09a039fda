"""The app process a SuperNode (or SuperLink) starts: ``python -m pollen._runner clientapp|serverapp``.

It reads POLLEN_APPIO_URL, POLLEN_APP_TOKEN (then removes it from the environment, so the app's
own code and its children never see it), POLLEN_RUN_ID and POLLEN_APP_REF (``module:attr``);
POLLEN_CHUNKS_VERIFIED=1 when the node vouches for the chunks it serves (not hashed again here).
The ClientApp loop is that of src/apps/clientapp-runner.ts: pull an instruction, handle it, push
the reply, until the node says shutdown or sends SIGTERM.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
import traceback
from typing import Any, Mapping, MutableMapping, Optional, Tuple

from ._appio import ClientAppIo
from ._wire import chunk_ids_of, config_from_wire, error_reply_to_wire
from .client_app import ClientApp, clip
from .context import context_from_env
from .errors import PollenError

USAGE = "usage: python -m pollen._runner clientapp|serverapp"


class AppLoadError(PollenError):
    """An app that cannot run: APP_LOAD_FAILED or APP_EXPORT_MISSING, with the hint."""

    @property
    def reason(self) -> str:
        return clip(f"{self.message} {self.hint}")


def load_app(ref: str, kind: type = ClientApp, component: str = "clientapp") -> Any:
    """The ``kind`` instance that ``module.path:attr`` names (attr defaults to ``app``)."""
    module_name, _, attr = ref.partition(":")
    attr = attr or "app"
    what = kind.__name__
    declare = f'[tool.pollen.app.components] {component} = "{module_name or "package.module"}:{attr}"'
    if not module_name:
        raise AppLoadError("APP_EXPORT_MISSING", f"No {what} module is named (POLLEN_APP_REF is empty).", f"Declare it in pyproject.toml: {declare}, then start the run again.")
    try:
        module = importlib.import_module(module_name)
    except BaseException as e:  # noqa: BLE001 - SyntaxError, ImportError, SystemExit: all refuse the app
        if isinstance(e, KeyboardInterrupt):
            raise
        traceback.print_exc(file=sys.stderr)
        raise AppLoadError(
            "APP_LOAD_FAILED",
            f"The {what} module {module_name} could not be loaded: {type(e).__name__}: {e}.",
            "Fix the error the message names (a missing package must be installed in the site's Python environment), then start the run again.",
        ) from None
    app = getattr(module, attr, None)
    if isinstance(app, kind):
        return app
    found = [n for n, v in vars(module).items() if isinstance(v, kind)]
    detail = (
        f"it has no attribute {attr!r}" if app is None else f"{attr!r} is a {type(app).__name__}"
    ) + (f"; its {what} is {found[0]!r}" if found else "")
    raise AppLoadError(
        "APP_EXPORT_MISSING",
        f"The {what} module {module_name} exports no {what} named {attr!r}: {detail}.",
        f"Create it at module level (`{attr} = {what}()`) and declare it in pyproject.toml: {declare}, then start the run again.",
    )


def _env(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise SystemExit(f"pollen._runner: {name} is not set (the SuperNode sets it when it starts an app)")
    return value


def app_settings(env: MutableMapping[str, str]) -> Tuple[str, str, str, str]:
    """URL, token, run id and app reference; the token leaves the environment."""
    url, token, run_id = _env(env, "POLLEN_APPIO_URL"), _env(env, "POLLEN_APP_TOKEN"), _env(env, "POLLEN_RUN_ID")
    env.pop("POLLEN_APP_TOKEN", None)
    return url, token, run_id, env.get("POLLEN_APP_REF", "")


def _on_sigterm(_signum: int, _frame: Any) -> None:
    # The node sends SIGTERM only after the run ended (or to stop a hung handler): leave at once,
    # from a wait for work or from inside a handler (SystemExit passes the handler's except).
    raise SystemExit(0)


def run_clientapp(env: MutableMapping[str, str] = os.environ) -> int:
    url, token, run_id, ref = app_settings(env)
    signal.signal(signal.SIGTERM, _on_sigterm)
    io = ClientAppIo(url, token, run_id, chunks_verified=env.get("POLLEN_CHUNKS_VERIFIED") == "1")
    try:
        # An app that cannot be loaded refuses every instruction with the reason and the hint,
        # so the run hears it as soon as it reaches this node, not as a round without replies.
        app: Optional[ClientApp] = None
        refusal: Optional[AppLoadError] = None
        try:
            app = load_app(ref)
        except AppLoadError as e:
            refusal = e
            print(f"pollen: {e} {e.hint}", file=sys.stderr)
        context = None
        while True:
            task = io.pull_task()
            if task.shutdown:
                break
            if not task.HasField("message"):
                continue
            if refusal is not None:
                io.push_result(error_reply_to_wire(task.message, refusal.code, refusal.reason, task.node_id, _now_ms()))
                continue
            if context is None:
                context = context_from_env(
                    run_id, task.node_id, config_from_wire(task.node_config), config_from_wire(task.run_config), env
                )
            known = chunk_ids_of(task.message)
            try:
                message = io.receive(task.message)
            except PollenError as e:  # RecordError, MessageError, ChunkError, PayloadTooLarge
                io.push_result(error_reply_to_wire(task.message, e.code, clip(e.message), task.node_id, _now_ms()))
                continue
            reply = app.handle(message, context)  # type: ignore[union-attr]
            del message  # the instruction's arrays may go before the reply's are sent
            io.push_result(io.send(reply, known=known))
            # Nor does the reply outlive its round: the next instruction's arrays reuse its memory.
            del reply
        return 0
    finally:
        io.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def run_serverapp_process(env: MutableMapping[str, str] = os.environ) -> int:
    url, token, run_id, ref = app_settings(env)
    from .server_app import run_serverapp  # the ServerApp side is imported only where it runs

    return int(run_serverapp(url=url, token=token, run_id=run_id, app_ref=ref) or 0)


def main(argv: list) -> int:
    if len(argv) != 1 or argv[0] not in ("clientapp", "serverapp"):
        print(USAGE, file=sys.stderr)
        return 2
    return run_clientapp() if argv[0] == "clientapp" else run_serverapp_process()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
