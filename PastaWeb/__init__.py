"""PASTA in a browser: ``pasta web``, a trame-slicer application on real Slicer MRML.

The page offers what the Slicer modules offer (load, Segment, draw a box and synthesise, edit,
measure, export), on the same Qt-free controllers (``PastaSlicerLib.controllers``); heavy work
runs in the task process (``pastacore.tasks``), so the views stay responsive. One server holds
one scene: every browser connected to it sees and edits the same scene.

- :mod:`.cli`: the ``pasta web`` command (registered as a ``pasta.commands`` entry point)
- :mod:`.app`: builds the Slicer application, the views and the server
- :mod:`.logic`: what each control does: one logic class per panel (:mod:`.load`, :mod:`.segment`,
  :mod:`.synth`, :mod:`.edit`, :mod:`.export`), each with a typed state (a dataclass behind trame's
  ``TypedState``), sharing a :mod:`.session` (scene, current nodes, the one job at a time, status line)
- :mod:`.ui`: the page (vuetify), with ``data-testid`` on every control a test clicks
- :mod:`.files`: the data folder the file picker shows, and nothing outside it
- :mod:`.access`: the token that guards a server bound to another host, and file downloads
"""
