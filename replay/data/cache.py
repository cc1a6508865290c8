"""Binary cache of loaded data sets, keyed by the source files' content hash.

Layout under the cache directory (default ``Settings().cache_dir / "datasets"``):

- ``<fingerprint>.npz``: uncompressed ``np.savez`` of one EllipticDataset (fast to read back);
- ``stat-index.json``: absolute path -> size, mtime_ns, ctime_ns, sha256 of that file, so an unchanged
  file is not re-hashed on every load (the same trick as git's index).

Every failure here is survivable: an unreadable entry is ignored (the caller re-parses and rewrites
it) and a failed write only logs a warning.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from replay.data.dataset import EllipticDataset
from txmon.core.files import atomic_write, sha256_file  # noqa: F401 - sha256_file: the loader's fingerprint

log = logging.getLogger(__name__)

# Bump when the loader's output for the same input bytes changes, so stale entries are ignored.
FORMAT_VERSION = 1
STAT_INDEX = "stat-index.json"

# A file modified within this long before it was hashed may change again without its mtime changing
# (coarse file-system timestamps: 2 s on FAT), so such a memo entry is not trusted ("racy git").
RACY_MARGIN_NS = 2_000_000_000

_ARRAYS = {
    "tx_ids": np.dtype(np.int64),
    "steps": np.dtype(np.int16),
    "features": np.dtype(np.float32),
    "labels": np.dtype(np.int8),
    "edges": np.dtype(np.int64),
}


def default_cache_dir() -> Path:
    from txmon.core.settings import Settings  # imported lazily: settings pull in pydantic

    return Settings().cache_dir / "datasets"


def entry_path(cache_dir: Path, fingerprint: str) -> Path:
    return cache_dir / f"{fingerprint}.npz"


class StatIndex:
    """Memo of file stat -> sha256 so unchanged files are not re-hashed.

    Callers stat a file, look it up, and on a miss hash it and ``record`` the stat taken *before*
    reading it, so a change during the read shows up as a changed stat next time.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / STAT_INDEX
        self._entries: dict[str, dict[str, int | str]] = {}
        self._dirty = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self._entries = {k: v for k, v in data.items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s: %s", self.path, e)

    @staticmethod
    def _key(path: Path) -> str:
        return str(path.resolve())

    def lookup(self, path: Path, st: os.stat_result) -> str | None:
        """The memoised sha256 of ``path`` if its stat is unchanged (and was not racy), else None."""
        e = self._entries.get(self._key(path))
        if not e:
            return None
        unchanged = (
            e.get("size") == st.st_size and e.get("mtime_ns") == st.st_mtime_ns and e.get("ctime_ns") == st.st_ctime_ns
        )
        hashed_at = e.get("hashed_at_ns")
        racy = not isinstance(hashed_at, int) or st.st_mtime_ns + RACY_MARGIN_NS > hashed_at
        sha = e.get("sha256")
        return sha if unchanged and not racy and isinstance(sha, str) else None

    def record(self, path: Path, st: os.stat_result, sha256: str, hashed_at_ns: int) -> None:
        """Remember ``sha256`` for ``path`` as stat'ed (st taken before reading) at ``hashed_at_ns``."""
        self._entries[self._key(path)] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
            "hashed_at_ns": hashed_at_ns,
            "sha256": sha256,
        }
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        payload = json.dumps(self._entries, indent=0, sort_keys=True).encode()
        try:
            atomic_write(self.path, lambda f: f.write(payload))
            self._dirty = False
        except OSError as e:
            log.warning("could not write %s: %s", self.path, e)


def read_dataset(cache_dir: Path, fingerprint: str) -> EllipticDataset | None:
    """The cached data set for ``fingerprint``, or None if absent, stale or unreadable."""
    path = entry_path(cache_dir, fingerprint)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != FORMAT_VERSION or str(z["fingerprint"].item()) != fingerprint:
                log.info("ignoring stale cache entry %s", path)
                return None
            arrays = {name: z[name] for name in _ARRAYS}
        for name, dtype in _ARRAYS.items():
            if arrays[name].dtype != dtype:
                raise ValueError(f"{name} has dtype {arrays[name].dtype}, expected {dtype}")
        return EllipticDataset(**arrays, fingerprint=fingerprint)  # validates the shapes
    except Exception as e:  # any damage (truncated zip, bad CRC, missing member...) means "rebuild"
        log.warning("ignoring unreadable cache entry %s: %s", path, e)
        return None


def write_dataset(cache_dir: Path, ds: EllipticDataset) -> Path | None:
    """Store ``ds`` under its fingerprint; returns the entry's path, or None if it could not be written."""
    path = entry_path(cache_dir, ds.fingerprint)
    arrays = {name: getattr(ds, name) for name in _ARRAYS}
    try:
        atomic_write(
            path,
            lambda f: np.savez(f, version=np.int64(FORMAT_VERSION), fingerprint=np.str_(ds.fingerprint), **arrays),
        )
    except OSError as e:
        log.warning("could not write cache entry %s: %s", path, e)
        return None
    return path
