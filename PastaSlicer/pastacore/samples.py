"""Real sample CT data, fetched once from a package registry and cached outside git.

The ``pyradiomics==3.1.0`` source archive on PyPI carries two real chest CTs with lung
tumour masks (``lung1``, ``lung2``), an MR brain (``brain1``, used to test the CT check),
and pyradiomics' reference feature values for them (``baseline/*.csv``). Only those files
are extracted into the cache folder; the archive itself is deleted afterwards.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from .digests import sha256_of
from .errors import PastaError

ARCHIVE = "pyradiomics-3.1.0.tar.gz"
ARCHIVE_SHA256 = "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4"
MEMBERS = {
    "lung1_image.nrrd",
    "lung1_label.nrrd",
    "lung2_image.nrrd",
    "lung2_label.nrrd",
    "brain1_image.nrrd",
    "brain1_label.nrrd",
    "baseline/baseline_shape.csv",
    "baseline/baseline_firstorder.csv",
    "README.md",
}
CASES = ("lung1", "lung2", "brain1")


def cache_dir() -> Path:
    """Per-user cache folder: ``$PASTA_HOME`` or ``$XDG_CACHE_HOME/pasta-slicer`` (``~/.cache``)."""
    if os.environ.get("PASTA_HOME"):
        return Path(os.environ["PASTA_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pasta-slicer"


def sample_dir() -> Path:
    return cache_dir() / "samples" / "pyradiomics-3.1.0"


def _index_url() -> str:
    """The package index pip would use: ``$PIP_INDEX_URL`` or PyPI's simple index."""
    return (os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/") + "/"


def download_from_index(project: str, archive_name: str, target: Path, timeout: float = 120) -> None:
    """Download the file ``archive_name`` of ``project`` into ``target``, found through the
    package index's project page (``ValueError`` when the page does not list it, ``OSError``
    when the index cannot be read). Archives are fetched directly rather than with ``pip
    download``: pyradiomics 3.1.0's metadata says 3.0.1a1, which pip's resolvers refuse."""
    page_url = urllib.parse.urljoin(_index_url(), f"{project}/")
    if page_url.startswith("file:"):  # an index on disk serves each project page as index.html
        page_url += "index.html"
    with urllib.request.urlopen(page_url, timeout=60) as response:
        page = response.read().decode("utf-8", "replace")
    links = [urllib.parse.urljoin(page_url, href) for href in re.findall(r'href="([^"]+)"', page)]
    wanted = [link for link in links if urllib.parse.urlsplit(link).path.endswith("/" + archive_name)]
    if not wanted:
        raise ValueError(f"{page_url} lists no {archive_name}")
    with urllib.request.urlopen(wanted[0].split("#", 1)[0], timeout=timeout) as response, open(target, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def ensure_samples(quiet: bool = False) -> Path:
    """Return the folder holding the sample files, downloading them on first use."""
    target = sample_dir()
    if all((target / name).is_file() for name in MEMBERS):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp = Path(tmp)
        archive = tmp / ARCHIVE
        local = os.environ.get("PASTA_PYRADIOMICS_SDIST")
        if local:
            shutil.copy(local, archive)
        else:
            if not quiet:
                print("fetching the pyradiomics 3.1.0 source archive (34.5 MB) for its real sample CTs...", file=sys.stderr)
            try:
                download_from_index("pyradiomics", ARCHIVE, archive)
            except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
                raise PastaError(f"could not download the sample data (pyradiomics 3.1.0 from PyPI): {exc}") from None
        if sha256_of(archive) != ARCHIVE_SHA256:
            raise PastaError("the downloaded pyradiomics archive has an unexpected SHA256; refusing to use it")
        staging = tmp / "extract"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name.split("/data/", 1)[-1] if "/data/" in member.name else None
                if name in MEMBERS and member.isfile():
                    out = staging / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        missing = [m for m in MEMBERS if not (staging / m).is_file()]
        if missing:
            raise PastaError(f"the pyradiomics archive lacks {', '.join(sorted(missing))}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def sample_paths(case: str) -> tuple[Path, Path]:
    """(image, label) paths of a sample case: ``lung1``, ``lung2`` or ``brain1``."""
    if case not in CASES:
        raise PastaError(f"unknown sample case {case!r}; choose one of {', '.join(CASES)}")
    folder = ensure_samples()
    return folder / f"{case}_image.nrrd", folder / f"{case}_label.nrrd"


def baseline_values(case: str) -> dict:
    """pyradiomics' reference shape and first-order feature values for ``case``."""
    folder = ensure_samples()
    values = {}
    for name in ("baseline_shape.csv", "baseline_firstorder.csv"):
        with open(folder / "baseline" / name, newline="") as handle:
            rows = list(csv.reader(handle))
        header = rows[0]
        if case not in header:
            raise PastaError(f"no baseline column for {case}")
        col = header.index(case)
        for row in rows[1:]:
            values[row[0]] = row[col]
    return values
