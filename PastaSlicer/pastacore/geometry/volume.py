"""A 3D array together with the grid that places it in the patient."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import PastaError
from .grid import Grid


@dataclass
class Volume:
    """``array[k, j, i]`` on ``grid``; ``is_label`` says whether values are class labels.

    ``meta`` carries optional facts from the file (modality, patient/study identifiers,
    DICOM UIDs, source path), never needed for the geometry.
    """

    array: np.ndarray
    grid: Grid
    is_label: bool = False
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.array.ndim != 3:
            raise PastaError(f"expected a 3D array, got {self.array.ndim} dimensions")
        if tuple(self.array.shape) != self.grid.shape:
            raise PastaError(f"array shape {self.array.shape} does not match grid shape {self.grid.shape}")

    def with_array(self, array: np.ndarray, is_label: bool | None = None) -> Volume:
        """Same grid and metadata, new voxels."""
        label = self.is_label if is_label is None else is_label
        return replace(self, array=array, grid=self.grid, is_label=label, meta=dict(self.meta))

    def check_finite(self) -> Volume:
        if np.issubdtype(self.array.dtype, np.floating) and not np.all(np.isfinite(self.array)):
            bad = int(np.count_nonzero(~np.isfinite(self.array)))
            raise PastaError(f"the volume has {bad} NaN or infinite voxels; fix or mask them before processing")
        return self

    def check_matches(self, other: Volume, what: str = "segmentation") -> None:
        """Refuse a label volume whose grid differs from this image's."""
        if not self.grid.same_as(other.grid, tol=1e-3):
            raise PastaError(
                f"the {what} grid ({other.grid.describe()}) does not match the image grid "
                f"({self.grid.describe()}); resample it onto the image first"
            )
