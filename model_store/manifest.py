"""The manifest written next to every saved model version (``<store>/<version>/manifest.json``)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MANIFEST_VERSION = 3  # 2: serving_sha256; 3: arrival
# Hyphens are allowed (the trainer has "mlp-local", "rf-local"): "rf-local-v2" parses as ("rf-local", 2).
MODEL_TYPE_PATTERN = r"[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*"
# A version id is "<model_type>-v<N>", N >= 1; the directory name and the manifest's version agree.
VERSION_RE = re.compile(rf"^({MODEL_TYPE_PATTERN})-v([1-9][0-9]*)$")


class ArrivalModel(BaseModel):
    """The model a GCN version serves on arrival, trained on arrival views (model_store.arrival): its own weights
    file, threshold and metrics; the normalisation is its parent's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    architecture: dict[str, Any] = Field(description="GCN constructor parameters, n_features as the parent's")
    threshold: float = Field(ge=0.0, le=1.0, description="an arrival alert if P(illicit) >= threshold")
    window_size: int = Field(ge=1, description="the arrival window the model was trained and thresholded for")
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    weights_file: str = Field("arrival.pt", pattern=r"^[A-Za-z0-9_.-]+$")
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def serving_fields(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "threshold": self.threshold, "window_size": self.window_size,
                "weights_sha256": self.weights_sha256}


class ModelManifest(BaseModel):
    """Everything needed to rebuild, trust and apply one saved model, except the tensors themselves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(pattern=VERSION_RE.pattern, description="'<model_type>-v<N>', e.g. gcn-v3")
    model_type: str = Field(pattern=rf"^{MODEL_TYPE_PATTERN}$", description="gcn, mlp, rf, lpa, ...")
    created_at: datetime = Field(description="UTC, timezone-aware")
    architecture: dict[str, Any] = Field(description="constructor parameters; always holds n_features")
    feature_mean: list[float] | None = Field(None, description="normalisation: x' = (x - mean) / std")
    feature_std: list[float] | None = None
    threshold: float = Field(ge=0.0, le=1.0, description="illicit if P(illicit) >= threshold")
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict, description="the training configuration")
    dataset_fingerprint: str = Field(min_length=1)
    # A bare file name: a manifest must not be able to point the loader outside its own directory.
    weights_file: str = Field("weights.pt", pattern=r"^[A-Za-z0-9_.-]+$")
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # What decides the verdicts besides the weights — the threshold, the architecture, the normalisation —
    # hashed with the weights' sha256 at save: an edit to any of them is refused at load, not served silently.
    serving_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="None in version-1 manifests")
    arrival: ArrivalModel | None = Field(None, description="the model served on arrival (GCNs from version 3)")
    manifest_version: int = MANIFEST_VERSION

    def serving_digest(self) -> str:
        """The sha256 ``serving_sha256`` must hold for this manifest's serving fields."""
        return serving_digest(self.model_type, self.architecture, self.threshold, self.feature_mean,
                              self.feature_std, self.weights_sha256,
                              self.arrival.serving_fields() if self.arrival else None)

    @property
    def n_features(self) -> int:
        return self.architecture["n_features"]

    @field_validator("created_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("created_at must be timezone-aware")
        return v.astimezone(UTC)

    @field_validator("weights_file")
    @classmethod
    def _bare_name(cls, v: str) -> str:
        if v in (".", ".."):
            raise ValueError("weights_file must be a file name")
        return v

    @field_validator("manifest_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if not 1 <= v <= MANIFEST_VERSION:
            raise ValueError(f"manifest_version {v} is not supported (this txmon reads 1..{MANIFEST_VERSION})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        m = VERSION_RE.match(self.version)
        if m and m.group(1) != self.model_type:
            raise ValueError(f"version {self.version!r} does not belong to model_type {self.model_type!r}")
        n = self.architecture.get("n_features")
        # bool is an int subclass; True is not a feature count. 0: a model that reads no features (LPA).
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"architecture must hold n_features as an int >= 0, got {n!r}")
        if (self.feature_mean is None) != (self.feature_std is None):
            raise ValueError("feature_mean and feature_std are set together or not at all")
        for name, values in (("feature_mean", self.feature_mean), ("feature_std", self.feature_std)):
            if values is None:
                continue
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} values but n_features is {n}")
            bad = next((i for i, x in enumerate(values) if not math.isfinite(x)), None)
            if bad is not None:
                raise ValueError(f"{name}[{bad}] is {values[bad]}")
        if self.arrival is not None and self.arrival.architecture.get("n_features") != n:
            raise ValueError(f"the arrival model reads {self.arrival.architecture.get('n_features')!r} features, "
                             f"the model {n}: they share one normalisation")
        if self.feature_std is not None:
            # The worker divides by std: a zero (constant feature) must be clamped by the trainer.
            bad = next((i for i, x in enumerate(self.feature_std) if x <= 0), None)
            if bad is not None:
                raise ValueError(f"feature_std[{bad}] is {self.feature_std[bad]}; clamp it to a positive value")
        return self


def serving_digest(model_type: str, architecture: dict[str, Any], threshold: float,
                   feature_mean: list[float] | None, feature_std: list[float] | None, weights_sha256: str,
                   arrival: dict[str, Any] | None = None) -> str:
    """sha256 of the fields that decide what a model serves, as canonical JSON (floats round-trip exactly);
    ``arrival``: the arrival model's serving fields, when there is one (absent from the hash otherwise, so older
    manifests keep their digest)."""
    fields = {"model_type": model_type, "architecture": architecture, "threshold": threshold,
              "feature_mean": feature_mean, "feature_std": feature_std, "weights_sha256": weights_sha256}
    if arrival is not None:
        fields["arrival"] = arrival
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
