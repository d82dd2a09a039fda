"""Loads a JupyterHub configuration file as the hub does and prints what it set, as JSON."""

import json
import sys

from jupyterhub.app import JupyterHub

app = JupyterHub()
app.load_config_file(sys.argv[1])


def plain(value):
    return sorted(value) if isinstance(value, (set, frozenset)) else value


sections = ("JupyterHub", "GenericOAuthenticator", "DockerSpawner", "Spawner")
out = {s: {k: plain(v) for k, v in app.config[s].items()} for s in sections}
out["classes"] = [
    f"{cls.__module__}.{cls.__name__}" for cls in (app.authenticator_class, app.spawner_class)
]
print(json.dumps(out))
