"""FedProx (Li et al., 2020): FedAvg whose train messages also carry ``proximal-mu``; each
ClientApp adds (mu / 2)·||w − w_global||² to its local loss."""

from __future__ import annotations

import math
from typing import Any, List

from ..errors import PollenError
from ..grid import Grid
from ..message import Message
from ..records import ArrayRecord, ConfigRecord
from .fedavg import FedAvg


class FedProx(FedAvg):
    """``FedProx(proximal_mu=0.1, ...)`` with FedAvg's options (Flower's ``FedProx``)."""

    def __init__(self, proximal_mu: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(proximal_mu, bool) or not isinstance(proximal_mu, (int, float)) or not math.isfinite(proximal_mu) or proximal_mu < 0:
            raise PollenError("INVALID_ARGUMENT", f"proximal_mu must be finite and >= 0, got {proximal_mu!r}")
        self.proximal_mu = proximal_mu

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> List[Message]:
        with_mu = ConfigRecord(dict(config))
        with_mu["proximal-mu"] = self.proximal_mu
        return super().configure_train(server_round, arrays, with_mu, grid)
