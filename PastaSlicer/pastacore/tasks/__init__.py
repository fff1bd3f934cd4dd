"""Heavy work in its own process: the jobs a front end starts, and the runners that start them.

A *job* is a named function (:mod:`.jobs`) that reads its inputs from a job folder (volumes
as ``.npy`` plus their grid, :mod:`.exchange`), does the work with the core, and writes its
outputs back into the folder. A *runner* (:mod:`.runners`) starts a job, either in a separate
process that streams progress as JSON lines on stdout (:class:`.runners.ProcessRunner`, what
Slicer and the web app use: a crash or a cancel never touches the user's session), or in this
process, synchronously (:class:`.runners.InlineRunner`, for tests and scripts), or on a PASTA
server (:class:`.remote.RemoteRunner`, standard-library HTTP, no torch on this side).
"""

from .remote import RemoteRunner  # noqa: F401
from .runners import InlineRunner, ProcessRunner, TaskHandle, TaskOutcome  # noqa: F401
