"""Cohorts: many cases through one engine, resumable, one failure at a time.

- :mod:`.engine` runs a :class:`~.engine.CaseWork` over cases, in this process or on a Dask
  cluster (:mod:`.cluster`), and records every case in the folder's manifest
  (:mod:`.manifest`, SQLite); a rerun skips what is done and unchanged.
- :mod:`.works` are the per-case works of ``pasta batch segment|report|synth`` (the same
  actions as the single-case commands, :mod:`pastacore.actions`); synthetic datasets use
  the engine too (:mod:`.dataset`).
- :mod:`pastacore.fileio.cases` turns a folder, a glob or a CSV into cases; :mod:`.table` writes
  the cohort table (one row per lesion, CSV and Parquet).
"""
