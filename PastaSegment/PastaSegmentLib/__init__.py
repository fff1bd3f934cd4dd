"""Slicer-side widgets of the PASTA Segment module (the work is PastaSlicerLib's controllers')."""
