"""Published Elliptic statistics the generator is calibrated to (ELLIPTIC.md), in one place."""

from __future__ import annotations

from dataclasses import dataclass

from txmon.core.elliptic_format import N_STEPS


@dataclass(frozen=True)
class Calibration:
    total_transactions: int = 203_769  # at scale 1.0 over 49 steps
    step_min: int = 1_000  # transactions per step at scale 1.0
    step_max: int = 8_000
    edges_per_node: float = 1.150
    share_illicit_labelled: float = 0.022  # 4,545 / 203,769
    share_licit_labelled: float = 0.206  # 42,019 / 203,769
    # Known services (exchanges...) and illicit transactions are labelled far more often than
    # ordinary users: most illicit activity is labelled, licit labels come from known entities.
    p_label_illicit: float = 0.8
    p_label_hub: float = 0.9
    shutdown_step: int = 43  # the dark market shut down: illicit share drops, patterns change
    shutdown_illicit_factor: float = 0.3
    hub_fraction: float = 0.003  # licit hubs (exchanges, services) among background transactions

    def mean_step_size(self) -> float:
        return self.total_transactions / N_STEPS


ELLIPTIC = Calibration()
