"""The versioned model store: one directory per version, plus a ``latest`` pointer per model type.

Layout::

    <root>/gcn-v1/weights.pt       torch.save of a dict[str, Tensor]
    <root>/gcn-v1/arrival.pt       the arrival model's tensors (GCNs; named by the manifest's ``arrival``)
    <root>/gcn-v1/manifest.json    ModelManifest; written last, so its presence marks a complete version
    <root>/latest.json             {"gcn": "gcn-v1", "rf": "rf-v2"}

Loading verifies the weights' sha256 against the manifest and unpickles tensors only
(``weights_only=True``), so a modified or hostile artifact is refused rather than executed.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from model_store.manifest import MODEL_TYPE_PATTERN, VERSION_RE, ArrivalModel, ModelManifest, serving_digest
from txmon.core.errors import TxmonError
from txmon.core.files import sha256_file

MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest.json"
_LOCK_FILE = ".latest.lock"


class ModelStoreError(TxmonError):
    """A user-facing problem with the store: unknown version, tampered or mismatched artifact, bad input."""


@dataclass(frozen=True)
class BrokenVersion:
    """A version directory whose manifest.json exists but cannot be read; listed so it is never silently lost."""

    version: str
    model_type: str
    path: Path
    error: str


def parse_version(version: str) -> tuple[str, int] | None:
    """``"gcn-v3"`` -> ``("gcn", 3)``; None if it is not a version id."""
    m = VERSION_RE.match(version)
    return (m.group(1), int(m.group(2))) if m else None


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a torn write."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _summary(e: ValidationError) -> str:
    errors = e.errors()
    parts = [f"{'.'.join(map(str, err['loc'])) or 'manifest'}: {err['msg']}" for err in errors[:3]]
    return "; ".join(parts) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")


def _plain(value: Any) -> Any:
    """numpy/torch scalars and arrays, and tuples, as the JSON types they are stored as."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return _plain(value.tolist())
    return value


def _json_normal(value: Any) -> Any:
    """What a value looks like after a trip through manifest.json (tuples become lists)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return value


@dataclass(frozen=True)
class ArrivalPart:
    """What ``ModelStore.save`` stores of a version's arrival model (the manifest's ``arrival``)."""

    state_dict: Mapping[str, torch.Tensor]
    architecture: dict[str, Any]
    threshold: float
    window_size: int
    metrics: dict[str, Any]
    training: dict[str, Any]


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- saving --------------------------------------------------------------------------------------------------

    def save(
        self,
        model_type: str,
        state_dict: Mapping[str, torch.Tensor],
        *,
        architecture: dict[str, Any],
        threshold: float,
        metrics: dict[str, Any],
        training: dict[str, Any],
        dataset_fingerprint: str,
        feature_mean: list[float] | None = None,
        feature_std: list[float] | None = None,
        promote: bool | None = None,
        arrival: ArrivalPart | None = None,
    ) -> ModelManifest:
        """Save a new version ``<model_type>-v<N>``, with its arrival model if given; ``promote=None`` promotes only
        the type's first model."""
        if parse_version(f"{model_type}-v1") is None:
            raise ModelStoreError(f"model type {model_type!r} must match {MODEL_TYPE_PATTERN} (e.g. gcn, rf)")
        blob = self._serialize(state_dict)
        arrival_blob = self._serialize(arrival.state_dict) if arrival else None
        # Plain JSON types up front, so the manifest returned here equals the one load() reads back.
        fields: dict[str, Any] = dict(
            model_type=model_type, created_at=datetime.now(UTC), architecture=_plain(architecture),
            feature_mean=_plain(feature_mean), feature_std=_plain(feature_std), threshold=_plain(threshold),
            metrics=_plain(metrics), training=_plain(training), dataset_fingerprint=dataset_fingerprint,
            weights_sha256=hashlib.sha256(blob).hexdigest(),
        )
        # Validate (and check JSON-serialisability) before claiming a directory, so bad input leaves no trace.
        try:
            if arrival is not None and arrival_blob is not None:
                fields["arrival"] = ArrivalModel(
                    architecture=_plain(arrival.architecture), threshold=_plain(arrival.threshold),
                    window_size=arrival.window_size, metrics=_plain(arrival.metrics),
                    training=_plain(arrival.training), weights_sha256=hashlib.sha256(arrival_blob).hexdigest())
            fields["serving_sha256"] = serving_digest(
                model_type, fields["architecture"], fields["threshold"], fields["feature_mean"],
                fields["feature_std"], fields["weights_sha256"],
                fields["arrival"].serving_fields() if arrival is not None else None)
            ModelManifest(version=f"{model_type}-v1", **fields).model_dump_json()
        except ValidationError as e:
            raise ModelStoreError(f"cannot save {model_type} model: {_summary(e)}") from e
        except ValueError as e:  # pydantic's serialisation error: metrics/training hold non-JSON values
            raise ModelStoreError(f"cannot save {model_type} model: {_first_line(e)}") from e

        version, vdir = self._claim(model_type)
        manifest = ModelManifest(version=version, **fields)
        try:
            _write_atomic(vdir / manifest.weights_file, blob)  # on disk before the manifest says the version exists
            if manifest.arrival is not None and arrival_blob is not None:
                _write_atomic(vdir / manifest.arrival.weights_file, arrival_blob)
            _write_atomic(vdir / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
        except BaseException:
            shutil.rmtree(vdir, ignore_errors=True)
            raise
        if promote is not False:
            self._set_latest(model_type, version, only_if_unset=promote is None)
        return manifest

    @staticmethod
    def _serialize(state_dict: Mapping[str, torch.Tensor]) -> bytes:
        if not isinstance(state_dict, Mapping):
            raise ModelStoreError(f"state_dict must be a dict of tensors, got {type(state_dict).__name__}")
        bad = [f"{k!r} ({type(v).__name__})" for k, v in state_dict.items()
               if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise ModelStoreError(f"state_dict must map str keys to torch.Tensor values; offending entries: "
                                  f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
        return buf.getvalue()

    def _claim(self, model_type: str) -> tuple[str, Path]:
        """Create the next free version directory; os.mkdir is atomic, so concurrent trainers never share one."""
        self.root.mkdir(parents=True, exist_ok=True)
        n = max((p[1] for p in map(parse_version, self._version_dirs()) if p and p[0] == model_type), default=0)
        while True:
            n += 1
            version = f"{model_type}-v{n}"
            try:
                os.mkdir(self.root / version)
            except FileExistsError:
                continue
            return version, self.root / version

    # -- the latest pointers -------------------------------------------------------------------------------------

    def latest(self, model_type: str) -> str | None:
        return self._read_latest().get(model_type)

    def promote(self, version: str) -> str | None:
        """Make ``version`` the latest of its type, after verifying it; returns the version it replaced."""
        manifest, _ = self.load(version)
        return self._set_latest(manifest.model_type, manifest.version, only_if_unset=False)

    def _read_latest(self) -> dict[str, str]:
        path = self.root / LATEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ModelStoreError(f"{path} is unreadable ({_first_line(e)}); fix or delete it") from e
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ModelStoreError(f"{path} must be a JSON object of model type -> version; fix or delete it")
        return data

    def _set_latest(self, model_type: str, version: str, *, only_if_unset: bool) -> str | None:
        with self._lock():  # read-modify-write: two trainers promoting different types must not lose an update
            pointers = self._read_latest()
            previous = pointers.get(model_type)
            if only_if_unset and previous is not None:
                return previous
            pointers[model_type] = version
            _write_atomic(self.root / LATEST_FILE, (json.dumps(pointers, indent=2, sort_keys=True) + "\n").encode())
            return previous

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _LOCK_FILE, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- reading -------------------------------------------------------------------------------------------------

    def manifest(self, ref: str, model_type: str | None = None) -> ModelManifest:
        """The manifest of a version id, or of ``"latest"`` for ``model_type``."""
        if ref == "latest":
            if model_type is None:
                raise ModelStoreError(f"'latest' needs a model type (types with a latest in {self.root}: "
                                      f"{', '.join(sorted(self._read_latest())) or 'none'})")
            version = self.latest(model_type)
            if version is None:
                raise ModelStoreError(f"no latest {model_type} model in {self.root}; save or promote one first")
        else:
            version = ref
        parsed = parse_version(version)
        path = self.root / version / MANIFEST_FILE
        if parsed is None or not path.is_file():
            what = f"latest {model_type} model {version!r} (from {LATEST_FILE})" if ref == "latest" else repr(ref)
            raise ModelStoreError(f"no model {what} in {self.root}; {self._available()}")
        if model_type is not None and parsed[0] != model_type:
            raise ModelStoreError(f"model {version} is a {parsed[0]} model, not {model_type}")
        manifest = self._read_manifest(path)
        if manifest.version != version:
            raise ModelStoreError(f"{path} describes {manifest.version}, not {version}: the version was copied "
                                  "or renamed by hand")
        return manifest

    def load(
        self,
        ref: str = "latest",
        *,
        model_type: str | None = None,
        n_features: int | None = None,
        expect_architecture: dict[str, Any] | None = None,
    ) -> tuple[ModelManifest, dict[str, torch.Tensor]]:
        """Verify and load a version's tensors; refuses tampered, hostile or mismatched artifacts."""
        m, state, _ = self.load_with_arrival(ref, model_type=model_type, n_features=n_features,
                                             expect_architecture=expect_architecture)
        return m, state

    def load_with_arrival(
        self,
        ref: str = "latest",
        *,
        model_type: str | None = None,
        n_features: int | None = None,
        expect_architecture: dict[str, Any] | None = None,
    ) -> tuple[ModelManifest, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """``load`` and the arrival model's tensors (None when the version has none), each file read once."""
        m = self.manifest(ref, model_type)
        if n_features is not None and m.n_features != n_features:
            raise ModelStoreError(f"model {m.version} was trained on {m.n_features} features, "
                                  f"but {n_features} were given")
        wrong = [f"{k}={m.architecture.get(k, '<missing>')!r} (expected {v!r})"
                 for k, v in (expect_architecture or {}).items()
                 if k not in m.architecture or m.architecture[k] != _json_normal(v)]
        if wrong:
            raise ModelStoreError(f"model {m.version}: architecture mismatch: {', '.join(wrong)}")
        if m.manifest_version >= 2 and m.serving_sha256 != m.serving_digest():
            raise ModelStoreError(f"model {m.version}: manifest.json's threshold, architecture or normalisation "
                                  f"differ from what was saved (serving sha256 mismatch): the manifest was edited")
        # A version is served whole: a broken arrival model refuses the version.
        arrival = self._tensors(m, m.arrival.weights_file, m.arrival.weights_sha256) if m.arrival else None
        return m, self._tensors(m, m.weights_file, m.weights_sha256), arrival

    def load_arrival(self, m: ModelManifest) -> dict[str, torch.Tensor]:
        """The verified tensors of version ``m``'s arrival model (ModelStoreError if it has none)."""
        if m.arrival is None:
            raise ModelStoreError(f"model {m.version} has no arrival model (trained before txmon stored one)")
        return self._tensors(m, m.arrival.weights_file, m.arrival.weights_sha256)

    def _tensors(self, m: ModelManifest, name: str, sha256: str) -> dict[str, torch.Tensor]:
        path = self.root / m.version / name
        if not path.is_file():
            raise ModelStoreError(f"model {m.version}: {path} is missing")
        found = sha256_file(path)
        if found != sha256:
            raise ModelStoreError(f"model {m.version}: {name} sha256 mismatch (expected {sha256}, "
                                  f"found {found}): the artifact was modified or corrupted")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unpickling failure means the same to the caller: refuse
            raise ModelStoreError(f"model {m.version}: {name} is not a plain tensor file and was refused "
                                  f"({_first_line(e)})") from e
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise ModelStoreError(f"model {m.version}: {name} does not hold a dict of tensors")
        return state

    def scan(self, model_type: str | None = None) -> list[ModelManifest | BrokenVersion]:
        """Every complete version (by type, then N), with unreadable manifests as ``BrokenVersion`` entries.

        Directories without manifest.json are saves in progress (or abandoned) and are skipped.
        """
        entries: list[tuple[tuple[str, int], ModelManifest | BrokenVersion]] = []
        for name in self._version_dirs():
            parsed = parse_version(name)
            path = self.root / name / MANIFEST_FILE
            if parsed is None or (model_type is not None and parsed[0] != model_type) or not path.is_file():
                continue
            try:
                m = self._read_manifest(path)
                if m.version != name:
                    raise ModelStoreError(f"{path} describes {m.version}, not {name}")
                entries.append((parsed, m))
            except ModelStoreError as e:
                entries.append((parsed, BrokenVersion(name, parsed[0], path, str(e))))
        return [e for _, e in sorted(entries, key=lambda t: t[0])]

    def _read_manifest(self, path: Path) -> ModelManifest:
        try:
            return ModelManifest.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as e:
            detail = _summary(e) if isinstance(e, ValidationError) else _first_line(e)
            raise ModelStoreError(f"{path} is not a valid manifest ({detail})") from e

    def _version_dirs(self) -> list[str]:
        try:
            return [p.name for p in self.root.iterdir() if p.is_dir() and parse_version(p.name)]
        except FileNotFoundError:
            return []

    def _available(self) -> str:
        versions = [e.version for e in self.scan()]
        return f"available: {', '.join(versions)}" if versions else "the store is empty"

    # Defined last: inside the class body, the name ``list`` would otherwise shadow the builtin for annotations.
    def list(self, model_type: str | None = None) -> list[ModelManifest]:
        """Every complete version, sorted by type then N; raises if any manifest is unreadable (see ``scan``)."""
        entries = self.scan(model_type)
        broken = [e for e in entries if isinstance(e, BrokenVersion)]
        if broken:
            raise ModelStoreError("; ".join(e.error for e in broken))
        return [e for e in entries if isinstance(e, ModelManifest)]
