"""The page: slice views in the middle, the PASTA panel on the left (load, Segment, box and
synthesis, segments, measurements, export, the segment editor), a status line at the bottom.
Every control a test or a person clicks carries a ``data-testid`` (see the README)."""

from __future__ import annotations

from trame.widgets import client, html
from trame.widgets.vuetify3 import (
    VBtn,
    VCombobox,
    VExpansionPanel,
    VExpansionPanels,
    VExpansionPanelText,
    VFileInput,
    VList,
    VListItem,
    VProgressLinear,
    VSelect,
    VTable,
    VTextField,
)

TITLE = "PASTA: AI-assisted oncology CT (research use only, not for diagnosis)"


def testid(name: str) -> list:
    return [f'data-testid="{name}"']


def _select(test_id: str, value: str, items: str, label: str, **extra) -> VSelect:
    """A compact drop-down bound to the state ``value`` with the choices in the state ``items``."""
    return VSelect(v_model=(value,), items=(items,), label=label, density="compact", raw_attrs=testid(test_id), **extra)


def _button(test_id: str, text: str, click, session, *needed: str, **extra) -> VBtn:
    """A button that is off while a task runs or while any of the ``needed`` state expressions is false."""
    off = " || ".join([*(f"!{n}" for n in needed), session.busy])
    return VBtn(text, click=click, disabled=(off,), raw_attrs=testid(test_id), **extra)


def build(layout, logic, editor_ui_factory, layout_manager):
    """Fill trame-slicer's ``ViewerLayout`` with the PASTA page (``logic``: a :class:`~.logic.PastaWebLogic`;
    each control binds to its panel's typed state by the state ids in ``<panel>.name``)."""
    server, session = logic.server, logic.session.name
    layout.title.set_text(TITLE)
    with layout.appbar:
        _select(
            "window",
            logic.load.name.window,
            logic.load.name.windows,
            "Window",
            hide_details=True,
            style="max-width: 160px;",
            classes="mx-2",
        )
    with layout.drawer:
        layout.drawer.width = 420
        with VExpansionPanels(multiple=True, v_model=(session.panels,), variant="accordion"):
            _load_panel(logic.load, session, server)
            _segment_panel(logic.segment, session)
            _synth_panel(logic.synth, session)
            _results_panel(logic.edit)
            _export_panel(logic.export, session, logic.edit)
            _pathology_panel(logic.pathology, session)
            with VExpansionPanel(title="Edit segments (paint, erase, scissors, islands, undo)"):
                with VExpansionPanelText():
                    editor_ui_factory()
    with layout.footer:
        html.Span(f"{{{{ {session.status} }}}}", classes="text-caption mx-2", raw_attrs=testid("status"))
    with layout.content:
        layout_manager.initialize_layout_grid(layout)
    # a finished export or scene save downloads at once (the links stay in the Export panel)
    fetch = server.trigger_name(logic.export.fetch_download)
    download = logic.export.name.download
    client.ClientStateChange(
        value=download,
        trigger_on_create=False,
        change=f"{download} && utils.download({download}.name, trigger('{fetch}', [{download}.key]), 'application/octet-stream')",
    )


def _load_panel(load, session, server):
    upload = server.trigger_name(load.upload_chunk)
    state = load.name
    with VExpansionPanel(title="Load a CT"):
        with VExpansionPanelText():
            _select("file", state.file, state.files, "From the server's data folder", no_data_text="no CT in the data folder")
            _button("load", "Load", load.load_file, session, state.file, block=True, classes="mb-2")
            VFileInput(
                label="or upload (NIfTI, NRRD, .mrb, DICOM files)",
                multiple=True,
                density="compact",
                hint=(f"`at most ${{{state.max_upload_mb}}} MB`",),
                persistent_hint=True,
                raw_attrs=testid("upload"),
                change=(
                    f"const files = $event.target.files; let size = 0; for (const f of files) size += f.size;"
                    f"if (size > {state.max_upload_mb} * 1e6) {{ {session.status} = 'error: the upload is larger than '"
                    f" + {state.max_upload_mb} + ' MB'; }} else {{ window.load_files_by_chunks(files, "
                    f"{{ trigger_name: '{upload}' }}); }}"
                ),
            )


def _segment_panel(segment, session):
    state = segment.name
    with VExpansionPanel(title="Segment"):
        with VExpansionPanelText():
            _select("model", state.model, state.models, "Model")
            VCombobox(  # models that take a text prompt (gCIS): a known prompt or free text
                v_model=(state.prompt,),
                items=(state.prompts,),
                v_show=(state.takes_prompt,),
                label="What to segment (prompt)",
                placeholder="e.g. liver tumor",
                density="compact",
                raw_attrs=testid("prompt"),
            )
            _select("region", state.region, state.regions, "Where to search")
            html.Div(f"Searches {{{{ {state.region_text} }}}}", v_if=(state.region_text,), classes="text-caption mb-2")
            with html.Div(classes="d-flex"):
                _button(
                    "segment",
                    "Segment",
                    segment.segment,
                    session,
                    session.volume_loaded,
                    color="primary",
                    classes="flex-grow-1 mr-2",
                )
                VBtn("Cancel", click=segment.session.cancel, disabled=(f"!{session.busy}",), raw_attrs=testid("cancel"))
            VProgressLinear(
                v_model=(session.progress,), v_show=(session.busy,), height=6, classes="mt-2", raw_attrs=testid("progress")
            )


def _synth_panel(synth, session):
    state = synth.name
    with VExpansionPanel(title="Draw a box and synthesise a lesion"):
        with VExpansionPanelText():
            with html.Div(classes="d-flex align-center"):
                _button(
                    "draw-box",
                    "Draw box",
                    synth.draw_box,
                    session,
                    session.volume_loaded,
                    color=(f"{state.placing} ? 'warning' : undefined",),
                    classes="mr-2",
                )
                VTextField(
                    v_model=(state.box,),
                    label="R1,A1,S1,R2,A2,S2 (mm)",
                    density="compact",
                    hide_details=True,
                    change=synth.set_box,
                    raw_attrs=testid("box"),
                )
            VTextField(
                v_model=(state.attributes,),
                label="Lesion, e.g. 3 cm irregular hypodense liver lesion",
                density="compact",
                classes="mt-2",
                hide_details=True,
                raw_attrs=testid("attributes"),
            )
            html.Div(f"{{{{ {state.parsed} }}}}", classes="text-caption my-1", raw_attrs=testid("parsed"))
            with html.Div(classes="d-flex"):
                _button(
                    "synthesize",
                    "Synthesize",
                    synth.synthesize,
                    session,
                    session.volume_loaded,
                    state.attributes,
                    color="primary",
                    classes="flex-grow-1 mr-2",
                )
                _button("apply", "Apply", synth.apply, session, state.has_preview, classes="mr-2")
                _button("discard", "Discard", synth.discard, session, state.has_preview)


def _results_panel(edit):
    state = edit.name
    with VExpansionPanel(title="Segments and measurements"):
        with VExpansionPanelText():
            with VList(density="compact", raw_attrs=testid("segments")):
                VListItem(
                    v_for=f"name in {state.segments}", key="name", title=("name",), raw_attrs=['data-testid="segment-name"']
                )
                VListItem(v_if=(f"!{state.segments}.length",), title="no segments yet")
            with VTable(density="compact", raw_attrs=testid("measurements")):
                with html.Thead():
                    with html.Tr():
                        for title in ("#", "name", "status", "mL", "long mm", "short mm", "HU"):
                            html.Th(title)
                with html.Tbody():
                    with html.Tr(v_for=f"m in {state.measurements}", key="m.lesion"):
                        for key in ("lesion", "name", "status", "volume_ml", "long_mm", "short_mm", "mean_hu"):
                            html.Td(f"{{{{ m.{key} }}}}")


def _export_panel(export, session, edit):
    state = export.name
    with VExpansionPanel(title="Export"):
        with VExpansionPanelText():
            with html.Div(classes="d-flex"):
                _button(
                    "export", "Export report", export.export, session, f"{edit.name.segments}.length", classes="flex-grow-1 mr-2"
                )
                _button("save-scene", "Save scene (.mrb)", export.save_scene, session, session.volume_loaded)
            _select(
                "report-formats",
                state.chosen,
                state.formats,
                "Report formats",
                multiple=True,
                chips=True,
                hide_details=True,
                classes="mt-2",
            )
            html.Div("The chosen formats, as a zip; also written on the server.", classes="text-caption mt-1")
            with VList(density="compact"):
                with VListItem(v_for=f"d in {state.downloads}", key="d.url"):
                    html.A("{{ d.name }}", href=("d.url",), download=("d.name",), raw_attrs=['data-testid="download"'])


def _pathology_panel(pathology, session):
    state = pathology.name
    with VExpansionPanel(title="Pathology: classify a 2-D image (PatchTCGA)"):
        with VExpansionPanelText():
            _select(
                "patch-encoder",
                state.encoder,
                state.encoders,
                "Encoder (installed with 'pasta models import --config')",
                no_data_text="no PatchTCGA encoder installed",
            )
            _select(
                "patch-head",
                state.head,
                state.heads,
                "Head (a .pt of the data folder)",
                no_data_text="no head in the data folder",
            )
            with html.Div(classes="d-flex"):
                VTextField(
                    v_model_number=(state.tile,),
                    type="number",
                    label="Tile (pixels)",
                    density="compact",
                    classes="mr-2",
                    raw_attrs=testid("patch-tile"),
                )
                _select("patch-class", state.class_name, state.classes, "Heat map of class")
            _button(
                "patch-classify",
                "Classify and overlay the heat map",
                pathology.classify,
                session,
                session.volume_loaded,
                state.encoder,
                state.head,
                color="primary",
                block=True,
            )
            html.Div(f"{{{{ {state.result} }}}}", classes="text-caption mt-1", raw_attrs=testid("patch-result"))
