"""Atomic, streaming writer of TRIDENT-format feature bags, and the check that a bag is finished.

The file layout (datasets, attributes, dtypes) is defined once, in :mod:`modaltune.data.h5layout`;
this module only streams rows into it.

Rows are written batch by batch to ``.<name>.h5.<pid>.<random>.tmp`` (process-unique, so two runs
into one folder never delete each other's files; memory stays at one batch); when the number
of rows is known up front (``n_rows``), datasets are contiguous and fixed-size, the layout TRIDENT
writes and the fastest to read back; otherwise they are chunked and grow. Only
:meth:`BagWriter.commit` renames the file to ``<name>.h5``. A crash, a kill or a full disk leaves at
most a temporary file, never a truncated ``.h5`` that looks complete; a write that fails (disk full,
quota, permissions, I/O error), including the final flush, close or rename, raises
:class:`BagWriteError` after the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from modaltune.data import h5layout
from modaltune.data.h5layout import FINISHED_STATUSES, bag_is_complete
from modaltune.fileio import os_error_code, temp_path

__all__ = ["BagWriter", "BagWriteError", "bag_is_complete", "FINISHED_STATUSES", "os_error_code"]

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
        # process-unique: two runs into one folder never delete each other's temporary files
        self.tmp = temp_path(self.path)
        self.n = 0
        self._committed = False
        self._file = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.tmp, "w")
        except (OSError, RuntimeError) as exc:  # h5py raises RuntimeError for some failed flushes
            self.abort()
            raise BagWriteError(self.path, "creating", exc) from exc
        try:
            self._init_layout(embedding_dim, coords_attrs, encoder, mpp, dtype, n_rows, chunk_rows, extra_attrs)
        except (OSError, RuntimeError) as exc:  # h5py raises RuntimeError for some failed flushes
            self.abort()
            raise BagWriteError(self.path, "creating", exc) from exc

    def _init_layout(self, embedding_dim, coords_attrs, encoder, mpp, dtype, n_rows, chunk_rows, extra_attrs) -> None:
        self.n_rows = None if n_rows is None else int(n_rows)
        self._features, self._coords = h5layout.create_layout(
            self._file, self.path, embedding_dim=embedding_dim, encoder=encoder, dtype=dtype, n_rows=self.n_rows,
            chunk_rows=chunk_rows, coords_attrs=coords_attrs, mpp=mpp, extra_attrs=extra_attrs)

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
        except (OSError, RuntimeError) as exc:  # h5py raises RuntimeError for some failed flushes
            raise BagWriteError(self.path, "writing", exc) from exc
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
        except (OSError, RuntimeError) as exc:  # h5py raises RuntimeError for some failed flushes
            raise BagWriteError(self.path, "writing", exc) from exc

    def commit(self, status: str = "complete", **root_attrs) -> Path:
        """Mark the bag ``status``, flush, close and atomically rename it to its final path.

        Any failure on the way (a full disk often shows only at flush or close) removes the temporary
        file and raises :class:`BagWriteError`; the final path is then untouched (absent, or the
        previous file when one existed).
        """
        if status not in FINISHED_STATUSES:
            raise ValueError(f"status must be one of {FINISHED_STATUSES}")
        if self._file is None or not self._file.id.valid:
            raise BagWriteError(self.path, "finishing", OSError("the bag was already closed"))
        if self.n_rows is not None and self.n != self.n_rows:
            raise ValueError(f"only {self.n} of {self.n_rows} rows were written; refusing to mark the bag {status}")
        step = "finishing"
        try:
            h5layout.finish_layout(self._file, status=status, num_patches=self.n, root_attrs=root_attrs)
            step = "flushing"
            self._file.flush()
            step = "closing"
            self._file.close()
            step = "renaming"
            os.replace(self.tmp, self.path)
        except (OSError, RuntimeError) as exc:  # h5py raises RuntimeError for some failed flushes
            self.abort()
            raise BagWriteError(self.path, step, exc) from exc
        self._committed = True
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (safe to call more than once).

        On a full disk HDF5 cannot close the file (flushing its caches fails) and retries when the
        handles are garbage-collected or at interpreter exit, where it crashes the process (segfault,
        rc 139). The file is discarded anyway, so it is first truncated to 0 bytes: that frees its
        blocks and the final flush has room. Then handles are dropped, the file closed, and deleted.
        """
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                os.truncate(self.tmp, 0)
        self._features = self._coords = None  # dataset handles keep the file id alive
        if f is not None:
            for _ in range(3):
                try:
                    if f.id.valid:
                        f.close()
                    break
                except Exception:  # noqa: BLE001 - HDF5 close on a full disk fails with varied errors: free the blocks again and retry
                    with contextlib.suppress(OSError):
                        os.truncate(self.tmp, 0)
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # read-only disk: nothing could be written there either
            pass

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()
