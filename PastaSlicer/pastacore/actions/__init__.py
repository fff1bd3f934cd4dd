"""The user's actions, one module each: the options a user chooses (a frozen dataclass every
front end builds) and ``run(options, inputs, progress, is_cancelled)``.

The command line, ``pasta batch``, the task process behind the Slicer modules and the web app,
and the server all reach the core through these, so one choice has one name everywhere.
"""
