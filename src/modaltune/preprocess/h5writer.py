"""Atomic, streaming writer of TRIDENT-format feature bags, and the check that a bag is finished.

File layout (TRIDENT's, plus modaltune's root attributes):

- ``features``: (N, D) float32 (or float16); attrs ``encoder``, ``name``, ``savetodir``.
- ``coords``: (N, 2) int64, level-0 (x, y) top-left; attrs ``patch_size``, ``patch_size_level0``,
  ``level0_magnification``, ``target_magnification``, ``overlap``, ``name``, ``savetodir``,
  ``level0_width``, ``level0_height``.
- root attrs: ``modaltune_version``, ``mpp``, ``status`` ('complete' | 'no_tissue'), ``encoder``,
  ``embedding_dim``.

Rows are written batch by batch to ``<name>.h5.tmp`` (memory stays at one batch); when the number
of rows is known up front (``n_rows``), datasets are contiguous and fixed-size, the layout TRIDENT
writes and the fastest to read back; otherwise they are chunked and grow. Only
:meth:`BagWriter.commit` renames the file to ``<name>.h5``. A crash, a kill or a full disk leaves at
most a ``.tmp`` file, never a truncated ``.h5`` that looks complete; a write that fails (disk full,
quota, permissions, I/O error), including the final flush, close or rename, raises
:class:`BagWriteError` after the temporary file is removed.
"""
from __future__ import annotations

import errno as _errno
import os
import re
from pathlib import Path

import numpy as np

__all__ = ["BagWriter", "BagWriteError", "bag_is_complete", "FINISHED_STATUSES", "os_error_code"]

FINISHED_STATUSES = ("complete", "no_tissue")


class BagWriteError(OSError):
    """Writing ``path`` failed; ``errno`` is the underlying error code when one is known (else None).

    Raised by :class:`BagWriter` for any OS/HDF5 error while creating, appending, flushing, closing
    or renaming, after the temporary file has been removed (the final path is never touched).
    """

    def __init__(self, path: Path, step: str, cause: BaseException):
        self.path, self.step = Path(path), step
        code = os_error_code(cause)
        detail = str(cause).strip().replace("\n", " ") or type(cause).__name__
        super().__init__(f"{step} {self.path.name} failed: {detail}")
        self.errno = code  # set after __init__: OSError(msg) alone leaves errno None
        self.strerror = os.strerror(code) if code else None

    def __str__(self) -> str:
        return self.args[0]


# h5py reports a failed write(2) as OSError without errno, naming it in the text:
# "Can't write data (file write failed: ..., errno = 28, error message = 'No space left on device', ...)".
_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)")
_STRERROR = {os.strerror(c).lower(): c for c in (_errno.ENOSPC, _errno.EDQUOT, _errno.EIO, _errno.EACCES, _errno.EROFS)}


def os_error_code(exc: BaseException | None) -> int | None:
    """The errno behind ``exc``: its own, one named in its message (h5py), or its cause's; None if unknown."""
    seen = 0
    while exc is not None and seen < 8:
        code = getattr(exc, "errno", None)
        if isinstance(code, int) and code > 0:
            return code
        text = str(exc)
        m = _ERRNO_IN_TEXT.search(text)
        if m:
            return int(m.group(1))
        low = text.lower()
        for msg, c in _STRERROR.items():
            if msg in low:
                return c
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _version() -> str:
    try:
        from modaltune import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - partial installs
        return "unknown"


class BagWriter:
    """Stream features and coords of one slide into ``path`` atomically.

    >>> # with BagWriter(path, embedding_dim=1280, coords_attrs=..., encoder='efficientnet_lite0') as w:
    >>> #     w.append(features_batch, coords_batch)
    >>> #     w.commit(status='complete')

    Leaving the ``with`` block without :meth:`commit` (e.g. on an exception) deletes the temporary file.
    """

    def __init__(self, path: str | Path, *, embedding_dim: int, coords_attrs: dict, encoder: str,
                 mpp: float, dtype: str = "float32", n_rows: int | None = None, chunk_rows: int = 1024,
                 extra_attrs: dict | None = None):
        import h5py

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.n = 0
        self._committed = False
        self._file = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.tmp, "w")
        except OSError as exc:
            self.abort()
            raise BagWriteError(self.tmp, "creating", exc) from exc
        try:
            self._init_layout(embedding_dim, coords_attrs, encoder, mpp, dtype, n_rows, chunk_rows, extra_attrs)
        except OSError as exc:
            self.abort()
            raise BagWriteError(self.tmp, "creating", exc) from exc

    def _init_layout(self, embedding_dim, coords_attrs, encoder, mpp, dtype, n_rows, chunk_rows, extra_attrs) -> None:
        d = int(embedding_dim)
        self.n_rows = None if n_rows is None else int(n_rows)
        if self.n_rows is not None:
            self._features = self._file.create_dataset("features", shape=(self.n_rows, d), dtype=dtype)
            self._coords = self._file.create_dataset("coords", shape=(self.n_rows, 2), dtype="int64")
        else:
            rows = max(1, int(chunk_rows))
            self._features = self._file.create_dataset("features", shape=(0, d), maxshape=(None, d), dtype=dtype, chunks=(rows, d))
            self._coords = self._file.create_dataset("coords", shape=(0, 2), maxshape=(None, 2), dtype="int64", chunks=(rows, 2))
        savetodir = str(self.path.parent)
        for k, v in coords_attrs.items():
            self._coords.attrs[k] = v
        self._coords.attrs["savetodir"] = savetodir
        name = coords_attrs.get("name", self.path.stem)
        self._features.attrs["encoder"] = encoder
        self._features.attrs["name"] = name
        self._features.attrs["savetodir"] = savetodir
        root = self._file.attrs
        root["modaltune_version"] = _version()
        root["mpp"] = float(mpp)
        root["encoder"] = encoder
        root["embedding_dim"] = d
        root["status"] = "incomplete"
        for k, v in (extra_attrs or {}).items():
            root[k] = v

    def append(self, features: np.ndarray, coords: np.ndarray) -> None:
        """Append (B, D) features and their (B, 2) level-0 coords."""
        b = int(features.shape[0])
        if coords.shape != (b, 2):
            raise ValueError(f"coords shape {coords.shape} does not match {b} feature rows")
        if b == 0:
            return
        if self.n_rows is not None and self.n + b > self.n_rows:
            raise ValueError(f"{self.n + b} rows written to a bag declared with {self.n_rows}")
        try:
            if self.n_rows is None:
                self._features.resize(self.n + b, axis=0)
                self._coords.resize(self.n + b, axis=0)
            self._features[self.n:self.n + b] = features
            self._coords[self.n:self.n + b] = coords
        except OSError as exc:
            raise BagWriteError(self.tmp, "writing", exc) from exc
        self.n += b

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Features (n, D) and coords (n, 2) written so far, read back from the temporary file."""
        return self._features[: self.n], self._coords[: self.n]

    def add_dataset(self, name: str, data: np.ndarray, attrs: dict | None = None) -> None:
        """Store an extra dataset (e.g. ``slide_embedding``) in the bag; it becomes visible with :meth:`commit`."""
        try:
            if name in self._file:
                del self._file[name]
            ds = self._file.create_dataset(name, data=data)
            for k, v in (attrs or {}).items():
                ds.attrs[k] = v
        except OSError as exc:
            raise BagWriteError(self.tmp, "writing", exc) from exc

    def commit(self, status: str = "complete", **root_attrs) -> Path:
        """Mark the bag ``status``, flush, close and atomically rename it to its final path.

        Any failure on the way (a full disk often shows only at flush or close) removes the temporary
        file and raises :class:`BagWriteError`; the final path is then untouched (absent, or the
        previous file when one existed).
        """
        if status not in FINISHED_STATUSES:
            raise ValueError(f"status must be one of {FINISHED_STATUSES}")
        if self.n_rows is not None and self.n != self.n_rows:
            raise ValueError(f"only {self.n} of {self.n_rows} rows were written; refusing to mark the bag {status}")
        step = "finishing"
        try:
            self._file.attrs["status"] = status
            self._file.attrs["num_patches"] = self.n
            for k, v in root_attrs.items():
                self._file.attrs[k] = v
            step = "flushing"
            self._file.flush()
            step = "closing"
            self._file.close()
            step = "renaming"
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise BagWriteError(self.tmp if step != "renaming" else self.path, step, exc) from exc
        self._committed = True
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (safe to call more than once)."""
        try:
            if self._file is not None and self._file.id.valid:
                self._file.close()
        except Exception:  # a failing disk may also fail the close; the file goes anyway
            pass
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()


def bag_is_complete(path: str | Path, encoder: str | None = None, coords_attrs: dict | None = None) -> bool:
    """True when ``path`` is a finished bag: readable, ``status`` finished, features/coords rows agree,
    and (when given) written by ``encoder`` with ``coords`` attributes equal to ``coords_attrs``
    (e.g. the same patch size and magnification). Used by resume to skip slides already done."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            status = f.attrs.get("status")
            status = status.decode() if isinstance(status, bytes) else status
            if status not in FINISHED_STATUSES or "features" not in f or "coords" not in f:
                return False
            if f["features"].shape[0] != f["coords"].shape[0] or f["coords"].ndim != 2:
                return False
            if encoder is not None:
                enc = f["features"].attrs.get("encoder")
                enc = enc.decode() if isinstance(enc, bytes) else enc
                if enc != encoder:
                    return False
            for k, v in (coords_attrs or {}).items():
                have = f["coords"].attrs.get(k)
                if have is None or abs(float(have) - float(v)) > 1e-6 * max(1.0, abs(float(v))):
                    return False
            return True
    except (OSError, KeyError, TypeError, ValueError):
        return False
