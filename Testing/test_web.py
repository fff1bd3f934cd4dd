"""PASTA in a browser, clicked like a person in Debian's chromium (playwright), on a real
`pasta web` server with the real lung2 CT, real Slicer MRML and the real engine: Segment, draw a
box and synthesise, paint one stroke, export. Screenshots of each step go to
$PASTA_WEB_SCREENSHOTS (the README's come from such a run)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
READY = re.compile(r"PASTA web is ready: (http://\S+)")


def start_server(args, log_path, timeout=120):
    """`pasta web ARGS` on a free port; returns (process, URL) once it prints its URL."""
    pasta = Path(sys.executable).with_name("pasta")
    log = open(log_path, "w")
    process = subprocess.Popen([str(pasta), "web", *args, "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = READY.search(line or "")
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"pasta web did not start: {Path(log_path).read_text()[-2000:]}")


def stop(process):
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def server(sample_dir, tmp_path_factory):
    pytest.importorskip("trame_slicer")
    out = tmp_path_factory.mktemp("web-out")
    process, url = start_server([str(sample_dir / "lung2_image.nrrd"), "--out", str(out)], out / "server.log")
    yield url, out
    stop(process)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (Utilities/bootstrap.sh installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 950}, accept_downloads=True)
        page = context.new_page()
        page.goto(server[0])
        wait_for(lambda: "Loaded lung2" in status(page), 60, page)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("PASTA_WEB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def status(page) -> str:
    return page.get_by_test_id("status").inner_text()


def wait_for(condition, seconds, page, interval=0.5):
    """Poll like a person watching the page; fail with what the status line says."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out; status: {status(page)!r}")


def click(page, testid):
    button = page.get_by_test_id(testid)
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    time.sleep(0.3)
    page.mouse.down()
    time.sleep(0.1)
    page.mouse.up()
    time.sleep(0.4)


def axial_view(page):
    return page.locator("img.image-display-area").first.bounding_box()


def click_in_view(page, view, fx, fy):
    page.mouse.move(view["x"] + fx * view["width"], view["y"] + fy * view["height"])
    time.sleep(0.3)
    page.mouse.down()
    time.sleep(0.1)
    page.mouse.up()
    time.sleep(0.8)


def segments(page) -> str:
    return page.get_by_test_id("segments").inner_text()


def measurements(page) -> str:
    return page.get_by_test_id("measurements").inner_text()


def coloured_pixels(path) -> int:
    """Pixels where red, green and blue differ clearly: a segment drawn over the grey CT."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    pixels = image.get_flattened_data() if hasattr(image, "get_flattened_data") else image.getdata()
    return sum(1 for r, g, b in pixels if max(r, g, b) - min(r, g, b) > 60)


def view_shows_the_ct(page) -> bool:
    """The axial view's first frame has arrived: many grey (CT) pixels, not a black canvas."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(page.locator("img.image-display-area").first.screenshot())).convert("L")
    return (
        sum(1 for v in (image.get_flattened_data() if hasattr(image, "get_flattened_data") else image.getdata()) if v > 60) > 5000
    )


def test_1_the_ct_is_shown(page, shots):
    wait_for(lambda: view_shows_the_ct(page), 60, page, interval=1.0)
    page.screenshot(path=shots / "web_1_loaded.png")
    assert page.get_by_test_id("load").is_visible()
    assert "lungs" in page.get_by_test_id("segment").locator("xpath=../..").inner_text()  # default region explained


@pytest.fixture(scope="module")
def tumour_box(lung2) -> str:
    """A 90 mm box around lung2's tumour, typed as a user would (R1,A1,S1,R2,A2,S2 in mm)."""
    import numpy as np

    image, tumour = lung2
    centre = image.grid.ijk_to_ras() @ np.array([*np.argwhere(tumour.array > 0).mean(axis=0)[::-1], 1.0])
    return ",".join(f"{c + d:.1f}" for d in (-45, 45) for c in centre[:3])


def test_2_segment_in_a_typed_box_finds_the_lung_tumour(page, shots, tumour_box):
    field = page.get_by_test_id("box").locator("input")
    field.fill(tumour_box)
    field.press("Enter")
    field.press("Tab")  # the field's change event: on Enter, or when it loses focus
    wait_for(lambda: "Box set" in status(page), 20, page)
    assert "box" in page.get_by_test_id("region").inner_text()  # the search region follows the box
    click(page, "segment")
    wait_for(lambda: "Segmenting" in status(page), 30, page)
    wait_for(lambda: "Lung tumor" in segments(page), 900, page, interval=1.0)
    assert not status(page).startswith("error")
    wait_for(lambda: "Lung tumor" in measurements(page), 30, page)
    page.get_by_test_id("segments").scroll_into_view_if_needed()
    page.screenshot(path=shots / "web_2_segmented.png")
    assert coloured_pixels(shots / "web_2_segmented.png") > 200


def test_3_draw_a_box_and_synthesise(page, shots):
    click(page, "draw-box")
    view = axial_view(page)
    click_in_view(page, view, 0.14, 0.42)  # two opposite corners, inside the right lung
    click_in_view(page, view, 0.27, 0.55)
    wait_for(lambda: "Box drawn" in status(page), 20, page)
    box = [float(v) for v in page.get_by_test_id("box").locator("input").input_value().split(",")]
    assert len(box) == 6 and all(b > a for a, b in zip(box[:3], box[3:]))
    attributes = page.get_by_test_id("attributes").locator("input")
    attributes.click()
    attributes.type("20 mm round-like solid lung nodule, well-defined margin", delay=20)
    wait_for(lambda: "lung" in page.get_by_test_id("parsed").inner_text(), 20, page)
    click(page, "synthesize")
    wait_for(lambda: "preview segmentation: Lung tumor (synthetic)" in segments(page), 300, page)
    # the case keeps what was segmented before: the real tumour's row and the synthetic one
    wait_for(lambda: "synthetic" in measurements(page), 30, page)
    rows = measurements(page).splitlines()
    assert any("synthetic" in row for row in rows) and any("Lung tumor" in row and "synthetic" not in row for row in rows)
    page.get_by_test_id("measurements").scroll_into_view_if_needed()
    page.screenshot(path=shots / "web_3_synthesised.png")
    click(page, "apply")
    wait_for(lambda: "Kept as" in status(page), 20, page)
    assert "synthetic lung_tumor segmentation: Lung tumor (synthetic)" in segments(page)


def test_4_a_paint_stroke_changes_the_measurements(page, shots):
    before = measurements(page)
    editor = page.locator(".v-expansion-panel", has_text="Edit segments")
    editor.scroll_into_view_if_needed()
    brush = editor.locator("button:has(.mdi-brush)").first
    brush.click()
    time.sleep(0.5)
    view = axial_view(page)
    x, y = view["x"] + 0.20 * view["width"], view["y"] + 0.48 * view["height"]
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(12):
        page.mouse.move(x + 4 * step, y + 2 * step)
        time.sleep(0.05)
    page.mouse.up()
    wait_for(lambda: measurements(page) != before, 30, page)
    page.screenshot(path=shots / "web_4_painted.png")


def test_5_export_downloads_the_report(page, shots, tmp_path, server):
    with page.expect_download(timeout=300_000) as caught:
        click(page, "export")
    archive = tmp_path / caught.value.suggested_filename
    caught.value.save_as(archive)
    with zipfile.ZipFile(archive) as handle:
        names = set(handle.namelist())
        report = json.loads(handle.read("report.json"))
    assert {"report.json", "type.json", "report.html", "report.pdf", "dicom/seg.dcm", "dicom/sr.dcm"} <= names
    assert report["lesions"] and all(lesion["volume_ml"] > 0 for lesion in report["lesions"])
    synthetic = [lesion for lesion in report["lesions"] if lesion["synthetic"]]
    real = [lesion for lesion in report["lesions"] if not lesion["synthetic"] and lesion["term"] == "tumor@lung"]
    assert len(synthetic) == 1 and synthetic[0]["status"] == "synthetic" and synthetic[0]["synthesis"]["engine"] == "procedural"
    assert real and max(lesion["volume_ml"] for lesion in real) > 10  # the real tumour is still in the case
    assert list(Path(server[1]).glob("*-report-*/report.json"))  # also written on the server
    page.get_by_test_id("download").first.scroll_into_view_if_needed()
    page.screenshot(path=shots / "web_5_exported.png")
    if os.environ.get("PASTA_WEB_SCREENSHOTS") and shutil.which("pdftoppm"):  # the README's picture of the PDF
        with zipfile.ZipFile(archive) as handle:
            (tmp_path / "report.pdf").write_bytes(handle.read("report.pdf"))
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "60",
                "-f",
                "1",
                "-l",
                "1",
                "-singlefile",
                str(tmp_path / "report.pdf"),
                str(shots / "report_pdf_page1"),
            ],
            check=True,
        )


# -- access and files (no browser) -------------------------------------------------------------


def test_another_host_needs_the_token(tmp_path):
    pytest.importorskip("trame_slicer")
    process, url = start_server(["--host", "0.0.0.0", "--out", str(tmp_path)], tmp_path / "server.log")
    try:
        token = re.search(r"token=([\w-]+)", url).group(1)
        base = url.split("?")[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base, timeout=10)
        assert refused.value.code == 403
        with urllib.request.urlopen(f"{base}?token={token}", timeout=10) as answer:
            assert answer.status == 200
    finally:
        stop(process)


def test_the_file_picker_stays_in_its_folder(tmp_path, sample_dir):
    from pastacore.errors import PastaError
    from pastaweb.files import DataFolder

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sample_dir / "lung1_image.nrrd", data / "ct.nrrd")
    (data / "notes.txt").write_text("not a CT")
    outside = tmp_path / "secret.nii.gz"
    outside.write_bytes(b"x")
    (data / "link.nii.gz").symlink_to(outside)
    folder = DataFolder(data)
    assert folder.entries() == ["ct.nrrd"]
    for bad in ("../secret.nii.gz", "link.nii.gz", str(outside), ""):
        with pytest.raises(PastaError):
            folder.resolve(bad)
    assert folder.resolve("ct.nrrd") == (data / "ct.nrrd").resolve()
