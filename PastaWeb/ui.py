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


def build(layout, logic, editor_ui_factory, layout_manager):
    """Fill trame-slicer's ``ViewerLayout`` with the PASTA page."""
    server = logic.server
    layout.title.set_text(TITLE)
    with layout.appbar:
        VSelect(
            v_model=("pasta_window",),
            items=("pasta_windows",),
            label="Window",
            density="compact",
            hide_details=True,
            style="max-width: 160px;",
            classes="mx-2",
            raw_attrs=testid("window"),
        )
    with layout.drawer:
        layout.drawer.width = 420
        with VExpansionPanels(multiple=True, v_model=("pasta_panels", [0, 1, 2, 3, 4, 5, 6]), variant="accordion"):
            _load_panel(logic, server)
            _segment_panel(logic)
            _synth_panel(logic)
            _results_panel()
            _export_panel(logic)
            _pathology_panel(logic)
            with VExpansionPanel(title="Edit segments (paint, erase, scissors, islands, undo)"):
                with VExpansionPanelText():
                    editor_ui_factory()
    with layout.footer:
        html.Span("{{ pasta_status }}", classes="text-caption mx-2", raw_attrs=testid("status"))
    with layout.content:
        layout_manager.initialize_layout_grid(layout)
    # a finished export or scene save downloads at once (the links stay in the Export panel)
    fetch = server.trigger_name(logic.fetch_download)
    client.ClientStateChange(
        value="pasta_download",
        trigger_on_create=False,
        change=f"pasta_download && utils.download(pasta_download.name, trigger('{fetch}', [pasta_download.key]), "
        "'application/octet-stream')",
    )


def _load_panel(logic, server):
    upload = server.trigger_name(logic.upload_chunk)
    with VExpansionPanel(title="Load a CT"):
        with VExpansionPanelText():
            VSelect(
                v_model=("pasta_file",),
                items=("pasta_files",),
                label="From the server's data folder",
                density="compact",
                no_data_text="no CT in the data folder",
                raw_attrs=testid("file"),
            )
            VBtn(
                "Load",
                click=logic.load_file,
                disabled=("!pasta_file || pasta_busy",),
                block=True,
                classes="mb-2",
                raw_attrs=testid("load"),
            )
            VFileInput(
                label="or upload (NIfTI, NRRD, .mrb, DICOM files)",
                multiple=True,
                density="compact",
                hint=("`at most ${pasta_max_upload_mb} MB`",),
                persistent_hint=True,
                raw_attrs=testid("upload"),
                change=(
                    f"const files = $event.target.files; let size = 0; for (const f of files) size += f.size;"
                    f"if (size > pasta_max_upload_mb * 1e6) {{ pasta_status = 'error: the upload is larger than '"
                    f" + pasta_max_upload_mb + ' MB'; }} else {{ window.load_files_by_chunks(files, "
                    f"{{ trigger_name: '{upload}' }}); }}"
                ),
            )


def _segment_panel(logic):
    with VExpansionPanel(title="Segment"):
        with VExpansionPanelText():
            VSelect(
                v_model=("pasta_model",), items=("pasta_models",), label="Model", density="compact", raw_attrs=testid("model")
            )
            VCombobox(  # models that take a text prompt (gCIS): a known prompt or free text
                v_model=("pasta_prompt",),
                items=("pasta_prompts",),
                v_show=("pasta_takes_prompt",),
                label="What to segment (prompt)",
                placeholder="e.g. liver tumor",
                density="compact",
                raw_attrs=testid("prompt"),
            )
            VSelect(
                v_model=("pasta_region",),
                items=("pasta_regions",),
                label="Where to search",
                density="compact",
                raw_attrs=testid("region"),
            )
            html.Div("Searches {{ pasta_region_text }}", v_if=("pasta_region_text",), classes="text-caption mb-2")
            with html.Div(classes="d-flex"):
                VBtn(
                    "Segment",
                    click=logic.segment,
                    color="primary",
                    disabled=("!pasta_volume_loaded || pasta_busy",),
                    classes="flex-grow-1 mr-2",
                    raw_attrs=testid("segment"),
                )
                VBtn("Cancel", click=logic.cancel, disabled=("!pasta_busy",), raw_attrs=testid("cancel"))
            VProgressLinear(
                v_model=("pasta_progress",), v_show=("pasta_busy",), height=6, classes="mt-2", raw_attrs=testid("progress")
            )


def _synth_panel(logic):
    with VExpansionPanel(title="Draw a box and synthesise a lesion"):
        with VExpansionPanelText():
            with html.Div(classes="d-flex align-center"):
                VBtn(
                    "Draw box",
                    click=logic.draw_box,
                    disabled=("!pasta_volume_loaded || pasta_busy",),
                    color=("pasta_placing ? 'warning' : undefined",),
                    classes="mr-2",
                    raw_attrs=testid("draw-box"),
                )
                VTextField(
                    v_model=("pasta_box",),
                    label="R1,A1,S1,R2,A2,S2 (mm)",
                    density="compact",
                    hide_details=True,
                    change=logic.set_box,
                    raw_attrs=testid("box"),
                )
            VTextField(
                v_model=("pasta_attributes",),
                label="Lesion, e.g. 3 cm irregular hypodense liver lesion",
                density="compact",
                classes="mt-2",
                hide_details=True,
                raw_attrs=testid("attributes"),
            )
            html.Div("{{ pasta_parsed }}", classes="text-caption my-1", raw_attrs=testid("parsed"))
            with html.Div(classes="d-flex"):
                VBtn(
                    "Synthesize",
                    click=logic.synthesize,
                    color="primary",
                    disabled=("!pasta_volume_loaded || pasta_busy || !pasta_attributes",),
                    classes="flex-grow-1 mr-2",
                    raw_attrs=testid("synthesize"),
                )
                VBtn(
                    "Apply",
                    click=logic.apply,
                    disabled=("!pasta_has_preview || pasta_busy",),
                    classes="mr-2",
                    raw_attrs=testid("apply"),
                )
                VBtn("Discard", click=logic.discard, disabled=("!pasta_has_preview || pasta_busy",), raw_attrs=testid("discard"))


def _results_panel():
    with VExpansionPanel(title="Segments and measurements"):
        with VExpansionPanelText():
            with VList(density="compact", raw_attrs=testid("segments")):
                VListItem(v_for="name in pasta_segments", key="name", title=("name",), raw_attrs=['data-testid="segment-name"'])
                VListItem(v_if=("!pasta_segments.length",), title="no segments yet")
            with VTable(density="compact", raw_attrs=testid("measurements")):
                with html.Thead():
                    with html.Tr():
                        for title in ("#", "name", "mL", "long mm", "short mm", "HU"):
                            html.Th(title)
                with html.Tbody():
                    with html.Tr(v_for="m in pasta_measurements", key="m.lesion"):
                        for key in ("lesion", "name", "volume_ml", "long_mm", "short_mm", "mean_hu"):
                            html.Td(f"{{{{ m.{key} }}}}")


def _export_panel(logic):
    with VExpansionPanel(title="Export"):
        with VExpansionPanelText():
            with html.Div(classes="d-flex"):
                VBtn(
                    "Export report",
                    click=logic.export,
                    disabled=("!pasta_segments.length || pasta_busy",),
                    classes="flex-grow-1 mr-2",
                    raw_attrs=testid("export"),
                )
                VBtn(
                    "Save scene (.mrb)",
                    click=logic.save_scene,
                    disabled=("!pasta_volume_loaded || pasta_busy",),
                    raw_attrs=testid("save-scene"),
                )
            VSelect(
                v_model=("pasta_report_chosen",),
                items=("pasta_report_formats",),
                label="Report formats",
                multiple=True,
                chips=True,
                density="compact",
                hide_details=True,
                classes="mt-2",
                raw_attrs=testid("report-formats"),
            )
            html.Div("The chosen formats, as a zip; also written on the server.", classes="text-caption mt-1")
            with VList(density="compact"):
                with VListItem(v_for="d in pasta_downloads", key="d.url"):
                    html.A("{{ d.name }}", href=("d.url",), download=("d.name",), raw_attrs=['data-testid="download"'])


def _pathology_panel(logic):
    with VExpansionPanel(title="Pathology: classify a 2-D image (PatchTCGA)"):
        with VExpansionPanelText():
            VSelect(
                v_model=("pasta_patch_encoder",),
                items=("pasta_patch_encoders",),
                label="Encoder (installed with 'pasta models import --config')",
                density="compact",
                no_data_text="no PatchTCGA encoder installed",
                raw_attrs=testid("patch-encoder"),
            )
            VSelect(
                v_model=("pasta_patch_head",),
                items=("pasta_patch_heads",),
                label="Head (a .pt of the data folder)",
                density="compact",
                no_data_text="no head in the data folder",
                raw_attrs=testid("patch-head"),
            )
            with html.Div(classes="d-flex"):
                VTextField(
                    v_model_number=("pasta_patch_tile",),
                    type="number",
                    label="Tile (pixels)",
                    density="compact",
                    classes="mr-2",
                    raw_attrs=testid("patch-tile"),
                )
                VSelect(
                    v_model=("pasta_patch_class",),
                    items=("pasta_patch_classes",),
                    label="Heat map of class",
                    density="compact",
                    raw_attrs=testid("patch-class"),
                )
            VBtn(
                "Classify and overlay the heat map",
                click=logic.classify_patches,
                color="primary",
                disabled=("!pasta_volume_loaded || pasta_busy || !pasta_patch_encoder || !pasta_patch_head",),
                block=True,
                raw_attrs=testid("patch-classify"),
            )
            html.Div("{{ pasta_patch_result }}", classes="text-caption mt-1", raw_attrs=testid("patch-result"))
