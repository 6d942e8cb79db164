"""Tiny synthetic data for tests, shared by modaltune's own tests and by anyone adding a method.

- :mod:`modaltune.testing.cohort`: ``make_cohort(root)`` writes a 12-patient on-disk cohort (slides,
  RNA, clinical, text; each patient misses something different, see its docstring); ``D`` is its
  slide feature width and ``PATIENTS`` its patient ids.
- :mod:`modaltune.testing.batches`: ``make_info()`` / ``make_batch()`` build a ``CohortInfo`` and
  batches that follow the batch contract (docs/ARCHITECTURE.md) without touching the disk.

Nothing else in the package imports this one (it is test support, not part of a pipeline).
"""
