"""One case, the way every command does it.

The per-case work of ``pasta segment``, ``pasta report`` and ``pasta synth``: read the
inputs, run the core, describe the result and write the outputs (through
:mod:`pastacore.fileio.atomic`). The single-case commands and ``pasta batch`` (each case on a
Dask worker) call these same functions, so a case of a cohort gives the files the command
gives for it alone.
"""
