"""The Export panel: the report of the current segmentation in the chosen formats (written on
the server, downloaded as a zip), the scene as a ``.mrb``, and the downloads offered so far."""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pastacore.errors import PastaError

from .session import WebSession, safe_name, typed_state


@dataclass
class ExportState:
    formats: list[dict] = field(default_factory=list)  # [{title, value}] of every registered report format
    chosen: list[str] = field(default_factory=list)  # the formats to write
    downloads: list[dict] = field(default_factory=list)  # [{name, url, key}] offered so far
    download: dict | None = None  # the latest: the page downloads it at once


class ExportLogic:
    def __init__(self, session: WebSession) -> None:
        self.session = session
        self.typed = typed_state(session.server, ExportState)
        self.data, self.name = self.typed.data, self.typed.name
        formats = session.reports.format_choices()  # every registered report format, all chosen
        self.data.formats = [{"title": f"{c['label']}: {c['description']}", "value": c["name"]} for c in formats]
        self.data.chosen = [c["name"] for c in formats]

    def export(self) -> None:
        """The report of the current segmentation in the chosen formats, written on the server and
        offered as a zip download."""
        session = self.session
        if session.segmentation is None:
            session.say("error: segment first (or load a scene with a segmentation)")
            return
        formats = list(self.data.chosen or ())
        if not formats:
            session.say("error: choose at least one report format")
            return
        volume, segmentation = session.volume, session.segmentation
        folder = session.out_dir / f"{safe_name(volume.GetName())}-report-{time.strftime('%Y%m%d-%H%M%S')}"

        def finished(outcome):
            if outcome.ok:
                archive = zip_folder(folder, folder.with_suffix(".zip"))
                self.offer(archive)
                outcome.message = f"Report written to {folder} ({len(outcome.value)} files); downloading {archive.name}."
            return outcome

        session.out_dir.mkdir(parents=True, exist_ok=True)
        session.start(
            "export",
            "Exporting the report",
            lambda p, f: session.reports.export(volume, segmentation, folder, formats, on_progress=p, on_finished=f),
            finished,
        )

    def save_scene(self) -> None:
        from pastacore.mrml.scene_io import save_mrb

        session = self.session
        if session.volume is None:
            session.say("error: load a CT first")
            return
        session.out_dir.mkdir(parents=True, exist_ok=True)
        name = f"{safe_name(session.volume.GetName())}-{time.strftime('%Y%m%d-%H%M%S')}.mrb"
        try:
            path = save_mrb(session.scene, session.out_dir / name)
        except PastaError as exc:
            session.say(f"error: {exc}")
            return
        self.offer(path)
        session.say(f"Scene saved to {path}; downloading {path.name}.")

    def offer(self, path: str | Path) -> None:
        """List ``path`` among the downloads and have the page download it."""
        key, url = self.session.downloads.offer(path)
        link = {"name": Path(path).name, "url": url, "key": key}
        self.data.downloads = self.data.downloads + [link]
        self.data.download = link

    def fetch_download(self, key: str) -> Any:
        """The bytes of an offered file, for the browser's download (``utils.download``)."""
        content = self.session.downloads.read(key)
        return self.session.server.protocol.addAttachment(content) if content is not None else None


def zip_folder(folder: Path, archive: Path) -> Path:
    """``folder``'s files in ``archive`` (written beside, then moved into place)."""
    temp = archive.with_name(archive.name + ".part")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, path.relative_to(folder))
    temp.replace(archive)
    return archive
