"""Adapters between pastacore data and a Slicer MRML scene.

They use only MRML/VTK calls that exist both in the desktop application and in the
Qt-free PyPI package ``slicer-core``; the scene is always passed in. ``slicer`` is imported
inside the functions, so ``pastacore`` itself imports without Slicer.
"""
