"""pollen.run against a stand-in ``pollen`` command (POLLEN_BIN): the arguments it is given, how
a run is followed, and how a refusal or a failed run reaches Python. The real command and a real
federation: test/python-notebook.test.ts."""

from __future__ import annotations

import json
import stat
import sys
import textwrap

import pytest
from fake_serverappio import SDK  # noqa: F401 - puts the SDK on the path

from pollen.control import Cli, Run, pollen_command, run
from pollen.errors import PollenError

# Answers from a script of documents: each call logs its argv and prints the next answer for its command.
FAKE = """#!{python}
import json, sys, os
state = os.environ["FAKE_STATE"]
with open(state) as f:
    s = json.load(f)
s["calls"].append(sys.argv[1:])
answers = s["answers"][sys.argv[1]]
answer = answers.pop(0) if len(answers) > 1 else answers[0]
with open(state, "w") as f:
    json.dump(s, f)
print(json.dumps(answer))
sys.exit(0 if answer.get("ok") else 2)
"""


def details(status, sub="", rounds=(), reason=""):
    run_ = {"runId": "r1", "status": status, "subStatus": sub or None, "reason": reason or None}
    return {"ok": True, "run": run_, "rounds": list(rounds), "artefacts": [{"name": "final_model.npz"}]}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "pollen"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state.json"
    monkeypatch.setenv("POLLEN_BIN", str(script))
    monkeypatch.setenv("FAKE_STATE", str(state))

    def answers(**by_command):
        state.write_text(json.dumps({"calls": [], "answers": by_command}))
        return lambda: json.loads(state.read_text())["calls"]

    return answers


ROUND = {"round": 1, "metrics": {"loss": 0.5}}


def test_run_starts_with_the_run_config_and_follows_the_rounds(fake):
    calls = fake(
        run=[{"ok": True, "runId": "r1", "superlink": "lab", "federation": "study"}],
        list=[details("running"), details("running", rounds=[ROUND]), details("finished", "completed", [ROUND, {**ROUND, "round": 2}])],
        log=[{"ok": True, "lines": [{"text": "round 1"}, {"text": "run completed"}]}],
    )
    started = run("apps/x", "study", run_config={"num-server-rounds": 2, "lr": 0.05, "deep": True, "name": "a b"})
    assert (started.run_id, started.federation) == ("r1", "study")
    seen = []
    started.wait(poll=0, on_round=seen.append)
    assert [r["round"] for r in seen] == [1, 2]
    assert started.status == "finished:completed"
    assert started.metrics == {1: {"loss": 0.5}, 2: {"loss": 0.5}}
    assert started.logs() == ["round 1", "run completed"]
    first, *rest = calls()
    assert first == [
        "run", "apps/x", "study",
        "--run-config", "num-server-rounds=2", "--run-config", "lr=0.05",
        "--run-config", "deep=true", "--run-config", "name=a b", "--json",
    ]  # fmt: skip
    # Later calls name the connection the run went to and the run's federation.
    assert rest[0] == ["list", "study", "--run-id", "r1", "--superlink", "lab", "--json"]
    assert rest[-1] == ["log", "r1", "study", "--superlink", "lab", "--json"]


def test_a_refusal_raises_its_code_message_and_hint(fake):
    error = {"code": "RUN_CONFIG_UNKNOWN", "message": 'The app has no run config "rounds"', "hint": "Did you mean num-rounds?"}
    fake(run=[{"ok": False, "error": error}])
    with pytest.raises(PollenError) as e:
        run("apps/x", run_config={"rounds": 1})
    assert (e.value.code, e.value.args[0], e.value.hint) == ("RUN_CONFIG_UNKNOWN", error["message"], error["hint"])
    with pytest.raises(PollenError) as bad:
        run("apps/x", run_config={"layers": [1, 2]})  # type: ignore[dict-item]
    assert bad.value.code == "INVALID_ARGUMENT" and "is a list" in bad.value.args[0]


def test_wait_raises_run_failed_with_the_reason_or_times_out(fake):
    fake(list=[details("finished", "failed", reason="ValueError: bad lr")])
    r = Run("r1", "study", Cli())
    with pytest.raises(PollenError) as e:
        r.wait(poll=0)
    assert (e.value.code, e.value.args[0]) == ("RUN_FAILED", "Run r1 failed: ValueError: bad lr")
    assert r.wait(poll=0, check=False) is r
    fake(list=[details("running")])
    with pytest.raises(TimeoutError, match="Run r1 is still running after 0 s"):
        r.wait(timeout=0)


def test_finds_the_command_and_says_when_it_cannot(tmp_path, monkeypatch):
    import pollen.control
    js = str(tmp_path / "bin" / "pollen.js")
    assert pollen_command({"POLLEN_BIN": js, "POLLEN_NODE": "/opt/node/bin/node"}) == ["/opt/node/bin/node", js]
    assert pollen_command({"POLLEN_BIN": "/usr/local/bin/pollen"}) == ["/usr/local/bin/pollen"]
    # An SDK inside a built Pollen runs that Pollen's command; one outside any, and none on PATH: refused.
    sdk = tmp_path / "pollen" / "sdk" / "python" / "pollen"
    sdk.mkdir(parents=True)
    (tmp_path / "pollen" / "dist").mkdir()
    monkeypatch.setattr(pollen.control, "__file__", str(sdk / "control.py"))
    assert pollen_command({"POLLEN_NODE": "node"}) == ["node", str(tmp_path / "pollen" / "bin" / "pollen.js")]
    (tmp_path / "pollen" / "dist").rmdir()
    with pytest.raises(PollenError) as e:
        pollen_command({"PATH": str(tmp_path)})
    assert e.value.code == "FILE_NOT_FOUND" and "POLLEN_BIN" in e.value.hint
    not_pollen = tmp_path / "echo"
    not_pollen.write_text(textwrap.dedent("#!/bin/sh\necho hello\n"))
    not_pollen.chmod(0o755)
    with pytest.raises(PollenError) as e:
        Cli(command=[str(not_pollen)])("list")
    assert e.value.code == "INTERNAL" and "printed no JSON document" in e.value.args[0]
