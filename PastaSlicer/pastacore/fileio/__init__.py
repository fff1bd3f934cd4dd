"""Reading and writing volumes (NIfTI, NRRD, DICOM) with exact geometry; atomic, checked writes."""

from .readers import as_label, as_volume, check_ct, read_volume  # noqa: F401
from .writers import write_volume  # noqa: F401
