"""pastacore: the Qt-free computation core of PASTA for 3D Slicer.

Data flows down this package: ``io`` (read, write, geometry, standardisation) ->
``models`` (networks, checkpoints, installed models) -> ``inference`` / ``synthesis`` /
``report`` -> ``mrml`` (adapters to a Slicer scene passed in explicitly) -> ``cli``.
Nothing here imports Qt or reaches for ``slicer.app``; heavy libraries (torch, SimpleITK,
slicer) are imported inside the functions that need them.
"""

__version__ = "0.1.0"

from .errors import PastaError  # noqa: F401  (re-exported for API users)
