"""Build and start the PASTA web application: Slicer's MRML scene and views (trame-slicer),
the PASTA panel on the shared controllers, and the server."""

from __future__ import annotations

import logging
from pathlib import Path


def layouts(threed: bool):
    """Axial view large, coronal and sagittal beside it (and the 3D view above them with ``threed``)."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    side = [ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()]
    if threed:
        side.insert(0, ViewLayoutDefinition.threed_view())
    return {
        "PASTA": Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.axial_view(), Layout(LayoutDirection.Vertical, side)])
    }


class PastaWebApp:
    def __init__(
        self, server, data_folder=None, out_dir="pasta-web-output", token=None, max_upload_mb=2048.0, threed=False, runner=None
    ):
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.app.logic.segmentation import SegmentEditorLogic
        from trame_slicer.app.ui import SegmentEditorUI, SegmentEditorUndoRedoUI, ViewerLayout
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        from pastacore.samples import cache_dir
        from pastacore.tasks import ProcessRunner
        from pastacore.terminology import register_slicer_contexts

        from . import access, ui
        from .logic import PastaWebLogic

        self.server = server
        server.enable_module(trame_slicer_module)
        self.slicer = SlicerApp()
        register_slicer_contexts(self.slicer.terminologies_logic, cache_dir() / "terminology")
        register_rca_factories(self.slicer.view_manager, server)
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, server)
        self.layout_manager.register_layout_dict(layouts(threed))
        self.layout_manager.set_layout("PASTA")
        self.downloads = access.Downloads()
        self.logic = PastaWebLogic(
            server, self.slicer, data_folder, out_dir, self.downloads, runner or ProcessRunner(), max_upload_mb
        )
        self.editor_logic = SegmentEditorLogic(server, self.slicer)
        editors = []

        def editor():
            editors.append(SegmentEditorUI())
            SegmentEditorUndoRedoUI(editor_ui=editors[0])

        with ViewerLayout(server, title=ui.TITLE, is_drawer_visible=True) as self.layout:
            ui.build(self.layout, self.logic, editor, self.layout_manager)
        self.editor_logic.set_ui(editors[0])
        server.state.trame__title = "PASTA"
        server.controller.on_server_bind.add(lambda wslink: access.bind(wslink, self.downloads, token))

    def start(self, host: str, port: int, **kwargs):
        """Serve (blocking); trame would stop after 300 s without a browser: it never does here."""
        logging.getLogger("trame_server").setLevel(logging.WARNING)
        return self.server.start(host=host, port=port, open_browser=False, timeout=0, show_connection_info=False, **kwargs)


def serve(
    image=None,
    host="127.0.0.1",
    port=8080,
    data=None,
    out="pasta-web-output",
    token=None,
    max_upload_mb=2048.0,
    threed=False,
    on_ready=None,
    quiet=True,
    runner=None,
):
    """Start ``pasta web``: load ``image`` (a CT or a .mrb) when given; ``on_ready(port)`` once it listens;
    ``runner``: where jobs run (default: the task process; a PASTA server's runner for ``--server``).
    ``quiet`` keeps VTK's warnings (deprecations of the view widgets) off the terminal; errors still show."""
    from trame.app import get_server

    from .files import DataFolder

    server = get_server("pasta-web", client_type="vue3")
    folder = DataFolder(data or (Path(image).parent if image else Path.cwd()))
    app = PastaWebApp(server, folder, out, token, max_upload_mb, threed, runner)
    if quiet:
        from vtkmodules.vtkCommonCore import vtkLogger, vtkObject

        vtkObject.GlobalWarningDisplayOff()
        vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    if image:
        app.logic.load.load_path(Path(image))
    if on_ready:
        server.controller.on_server_ready.add(lambda **_: on_ready(server.port))
    app.start(host, port)
    return app
