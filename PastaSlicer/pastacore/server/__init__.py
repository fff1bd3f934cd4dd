"""``pasta serve``: one machine with GPUs runs PASTA's actions for Slicer, the browser app and the
command line of other machines. Imports neither FastAPI nor Dask until a server starts."""
