"""What the PASTA modules share, in two layers.

- :mod:`.controllers`: what each click does, on a scene and a task runner given to it. Qt-free:
  the Slicer modules and the web app (``pasta web``) both drive these, and the tests drive them
  on ``slicer-core``.
- :mod:`.gui`: what needs the Slicer application (Qt widgets, message boxes, installing Python
  packages into Slicer, polling a running task from a Qt timer).

Heavy work never runs in Slicer's process: the controllers start it as a job in the task
process (:mod:`pastacore.tasks`).
"""
