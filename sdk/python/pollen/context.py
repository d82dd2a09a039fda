"""Context: what an app knows about where it runs (Flower's ``Context``).

``node_config`` is set by the site operator (e.g. the path of the local data), ``run_config`` by
the user who starts the run, and ``state`` persists across the messages a node handles within one
run. ``gpus`` and ``resources`` say what the SuperNode gave this app process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Union

from .records import RecordDict

UserConfigValue = Union[int, float, str, bool]


@dataclass
class Context:
    run_id: str
    node_id: str
    node_config: Dict[str, UserConfigValue] = field(default_factory=dict)
    run_config: Dict[str, UserConfigValue] = field(default_factory=dict)
    state: RecordDict = field(default_factory=RecordDict)
    # GPU ids given to this process (also in CUDA_VISIBLE_DEVICES); empty for none.
    gpus: List[int] = field(default_factory=list)
    # {"cpu": N or None, "gpus": [...]}
    resources: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.resources:
            self.resources = {"cpu": None, "gpus": list(self.gpus)}


def gpus_from_env(env: Mapping[str, str]) -> List[int]:
    """POLLEN_GPUS: a comma list of GPU ids, empty (or absent) for none."""
    text = env.get("POLLEN_GPUS", "").strip()
    return [int(part) for part in text.split(",") if part.strip()]


def resources_from_env(env: Mapping[str, str]) -> Dict[str, object]:
    cpu: Optional[int] = int(env["POLLEN_CPUS"]) if env.get("POLLEN_CPUS", "").strip() else None
    return {"cpu": cpu, "gpus": gpus_from_env(env)}


def context_from_env(
    run_id: str,
    node_id: str,
    node_config: Mapping[str, UserConfigValue],
    run_config: Mapping[str, UserConfigValue],
    env: Mapping[str, str] = os.environ,
) -> Context:
    resources = resources_from_env(env)
    return Context(
        run_id=run_id,
        node_id=node_id,
        node_config=dict(node_config),
        run_config=dict(run_config),
        gpus=list(resources["gpus"]),  # type: ignore[arg-type]
        resources=resources,
    )
