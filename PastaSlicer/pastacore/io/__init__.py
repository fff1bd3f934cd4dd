"""Reading, writing and resampling volumes with exact geometry (LPS, ``array[k, j, i]``)."""

from .geometry import Grid  # noqa: F401
from .readers import as_label, check_ct, read_volume  # noqa: F401
from .volume import Volume  # noqa: F401
from .writers import write_volume  # noqa: F401
