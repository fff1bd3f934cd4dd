"""DICOM SEG and a DICOM SR measurement report (TID 1500), made with highdicom.

``dicom/seg.dcm`` holds one binary segment per lesion (lesion number = segment number, coded
with SNOMED CT from ``Resources/terminology.json``, anatomic region = organ). ``dicom/sr.dcm``
is a Comprehensive 3D SR whose TID 1500 report has, per lesion, a TID 1411 volumetric group
referencing its SEG segment (and through it the CT images) with its time point (TID 1502:
baseline, or follow-up as "Posttreatment", order 2), volume, maximum 3D diameter, long and
short axis (method RECIST 1.1), the model's confidence (DCM "Probability", mean and maximum,
with the model as algorithm) and attenuation statistics, its RECIST 1.1 role (DCM "Target
Lesion at Baseline" / "Non-Target Lesion at Baseline", or a new lesion) and review status
(proposed, edited, confirmed, manual, unknown, synthetic) and the report attributes as qualitative
evaluations (private scheme ``99PASTA``). A synthetic lesion (inserted by lesion synthesis) says
so: its SEG segment is labelled "(synthetic)" with the synthesis as its algorithm, and its SR
group has the qualitative evaluation "Synthetic lesion: Yes" with its lesion type, engine and
seed as text-free coded values, besides the review status "Synthetic". A lesion keeps its tracking UID across time points.
A follow-up adds a group with the sum of diameters and the target and overall response.

Source images:

* DICOM input (``Volume.meta["dicom_files"]``): the SEG and SR reference the original CT
  instances of the slices that hold lesions; their study is reused so PACS file them together.
* Any other input (NIfTI, NRRD): there are no DICOM images to reference, so a CT series is
  *derived* from the volume into ``dicom/ct/`` (one file per slice, new Study, Series, Frame of
  Reference and SOP Instance UIDs, ImageType DERIVED\\SECONDARY, HU rounded to integers) and
  the SEG and SR reference it. :func:`derived_note` words this for the report.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..errors import PastaError
from .formats import ReportFormat, register
from .model import SOFTWARE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..geometry.volume import Volume
    from .model import CaseInfo, CaseReport


MANUFACTURER = "PASTA for 3D Slicer"
PRIVATE_SCHEME = "99PASTA"


def derived_note() -> str:
    return (
        "The input CT was not DICOM: dicom/ct holds a CT series derived from it (new Study, Series, Frame of "
        "Reference and SOP Instance UIDs; HU rounded to integers), and the DICOM SEG and SR reference these "
        "derived images, not the original acquisition."
    )


def _code(triplet, fallback=("SCT", "52988006", "Lesion")):
    from highdicom.sr import CodedConcept

    scheme, value, meaning = triplet if triplet and len(triplet) == 3 and triplet[1] else fallback
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _lesion_codes(lesion) -> tuple:
    """(property type, organ region or None, laterality or None) codes of a lesion."""
    from pydicom.sr.codedict import codes

    from ..resources import load_json
    from ..terminology import term_for_label_name

    data = load_json("terminology.json")
    kind = lesion.term.split("@")[0] if lesion.term else "lesion"
    ptype = _code(data["lesions"].get(kind, {}).get("code"))
    m = lesion.measurement
    organ_key = term_for_label_name(m.organ) if m.organ else None
    region = None
    if organ_key and "@" not in organ_key and organ_key in data["structures"]:
        region = _code(data["structures"][organ_key]["code"])
    laterality = {"left": codes.SCT.Left, "right": codes.SCT.Right}.get(m.side)
    return ptype, region, laterality


# --- derived CT series --------------------------------------------------------------------


def write_derived_ct(image: Volume, folder: str | Path, case: CaseInfo) -> list:
    """Write ``image`` as a CT series (one file per slice k) into ``folder``; return the datasets."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grid = image.grid
    array = np.asarray(image.array)
    values = np.clip(np.rint(array), -32768, 32767).astype(np.int16)
    now = datetime.datetime.now()
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    row_dir, col_dir = grid.direction[:, 0], grid.direction[:, 1]
    si, sj, sk = grid.spacing
    datasets = []
    for k in range(array.shape[0]):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber = ""
        ds.Modality = "CT"
        ds.Manufacturer = MANUFACTURER
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Derived from a non-DICOM CT by PASTA for 3D Slicer"
        ds.SeriesDescription = f"Derived CT {case.image_name}"[:64]
        ds.PatientName = case.patient_name or f"{case.case_id}^"
        ds.PatientID = case.patient_id or case.case_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.KVP = ""
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.Laterality = ""
        ds.PatientPosition = ""
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [float(f"{v:.6f}") for v in grid.index_to_lps([0.0, 0.0, float(k)])]
        ds.ImageOrientationPatient = [float(f"{v:.8f}") for v in (*row_dir, *col_dir)]
        ds.SliceThickness = float(f"{sk:.6f}")
        ds.PixelSpacing = [float(f"{sj:.8f}"), float(f"{si:.8f}")]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = values[k].tobytes()
        ds.save_as(folder / f"CT{k + 1:05d}.dcm", enforce_file_format=True)
        del ds.PixelData  # keep only the header in memory; highdicom needs no pixels
        datasets.append(ds)
    return datasets


def _source_datasets(image, report, out_dir) -> tuple:
    """(datasets per slice k, derived?) for the SEG/SR to reference."""
    import pydicom

    files = image.meta.get("dicom_files") or []
    if files and len(files) == image.array.shape[0]:
        try:
            return [pydicom.dcmread(f, stop_before_pixels=True) for f in files], False
        except Exception as exc:  # files moved since reading, unreadable...
            raise PastaError(f"cannot re-read the source DICOM files for the SEG/SR: {exc}") from None
    return write_derived_ct(image, Path(out_dir) / "ct", report.case), True


# --- SEG and SR ---------------------------------------------------------------------------


def write_seg_sr(
    report: CaseReport, image: Volume, labels: Volume, out_dir: str | Path, formats: Sequence[str] = ("seg", "sr")
) -> list:
    """Write ``seg.dcm`` and/or ``sr.dcm`` (the SR needs the SEG; it is made in memory when
    only ``sr`` is asked) into ``out_dir`` (``dicom/`` of the report folder). Returns the paths."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from .key_images import lesion_mask

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not report.lesions:
        raise PastaError("there is no lesion to write into a DICOM SEG")
    sources, derived = _source_datasets(image, report, out_dir)
    if derived and derived_note() not in report.notes:
        report.notes.append(derived_note())

    n_seg = len(report.lesions)
    masks = []
    for lesion in report.lesions:
        masks.append(lesion_mask(labels.array, lesion.measurement))
    slices = sorted({k for box, mask in masks for k in range(box[0].start, box[0].stop)})
    # lesions never overlap, so one frame per slice holding segment numbers (not one bit plane per
    # lesion: that would need slices x rows x columns x lesions bytes)
    frames = np.zeros((len(slices), image.array.shape[1], image.array.shape[2]), np.uint8 if n_seg < 256 else np.uint16)
    position = {k: n for n, k in enumerate(slices)}
    for s, (box, mask) in enumerate(masks):
        for dk in range(mask.shape[0]):
            frames[position[box[0].start + dk], box[1], box[2]][mask[dk]] = s + 1

    automatic = next((m for m in report.models if m.role in ("segmentation", "")), None)
    algorithm = None
    if automatic is not None:
        algorithm = hd.AlgorithmIdentificationSequence(
            name=automatic.name[:64], family=codes.cid7162.ArtificialIntelligence, version=automatic.version or "unknown"
        )
    descriptions, tracking = [], []
    for n, lesion in enumerate(report.lesions, start=1):
        ptype, region, _ = _lesion_codes(lesion)
        uid = lesion.tracking_uid or generate_uid()
        tracking.append(uid)
        made_by = algorithm
        if lesion.synthetic:
            made_by = hd.AlgorithmIdentificationSequence(
                name="PASTA lesion synthesis",
                family=codes.cid7162.ArtificialIntelligence,
                version=str(lesion.synthetic.get("engine") or "unknown")[:64],
            )
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=(f"Lesion {lesion.number}" + (" (synthetic)" if lesion.synthetic else ""))[:64],
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=ptype,
                algorithm_type="AUTOMATIC" if made_by else "MANUAL",
                algorithm_identification=made_by,
                tracking_uid=uid,
                tracking_id=f"Lesion {lesion.number}",
                anatomic_regions=[region] if region is not None else None,
            )
        )
    seg = hd.seg.Segmentation(
        source_images=[sources[k] for k in slices],
        pixel_array=frames,
        segmentation_type="BINARY",
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=300,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=SOFTWARE,
        software_versions=__version__,
        device_serial_number="none",
        content_label="LESIONS",
        content_description="Lesions measured by PASTA for 3D Slicer",
        series_description="PASTA lesion segmentation",
    )
    written = []
    if "seg" in formats:
        seg.save_as(out_dir / "seg.dcm")
        written.append(out_dir / "seg.dcm")
    if "sr" in formats:
        sr = _make_sr(report, seg, [sources[k] for k in slices], tracking)
        sr.save_as(out_dir / "sr.dcm")
        written.append(out_dir / "sr.dcm")
    return written


def _referenced_segment(seg, number: int, sources):
    """The SR's reference to segment ``number`` of ``seg``: its frames and their source images.

    (highdicom's ``ReferencedSegment.from_segmentation`` fails on a SEG with a single segment,
    whose segment identification sits in the shared functional groups.)
    """
    import highdicom as hd

    shared = seg.SharedFunctionalGroupsSequence[0]
    default = (
        shared.SegmentIdentificationSequence[0].ReferencedSegmentNumber if "SegmentIdentificationSequence" in shared else None
    )
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    images = []  # frame numbers are left out: with them the segment number is not allowed
    for item in seg.PerFrameFunctionalGroupsSequence:
        ident = (
            item.SegmentIdentificationSequence[0].ReferencedSegmentNumber if "SegmentIdentificationSequence" in item else default
        )
        if ident != number:
            continue
        for derivation in item.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                uid = source.ReferencedSOPInstanceUID
                if uid in by_uid and uid not in images:
                    images.append(uid)
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=number,
        source_images=[hd.sr.SourceImageForSegmentation.from_source_image(by_uid[u]) for u in images],
    )


def _private(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value[:16], scheme_designator=PRIVATE_SCHEME, meaning=meaning[:64])


def _time_point(report):
    """TID 1502 time point context: baseline (order 1) or follow-up (order 2)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    baseline = report.time_point != "follow-up"
    return hd.sr.TimePointContext(
        time_point=report.time_point,
        time_point_type=codes.DCM.Baseline if baseline else codes.DCM.Posttreatment,
        time_point_order=1 if baseline else 2,
    )


def _algorithm(report):
    import highdicom as hd

    model = next((m for m in report.models if m.role in ("segmentation", "")), None)
    if model is None:
        return None
    return hd.sr.AlgorithmIdentification(name=model.name[:64], version=model.version or "unknown")


def _review_evaluations(lesion) -> list:
    """The RECIST 1.1 role and how the lesion came about (proposed, edited...), as qualitative evaluations."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    role = lesion.recist.get("role", "")
    values = {
        "target": codes.DCM.TargetLesionAtBaseline,
        "non-target": codes.DCM.NonTargetLesionAtBaseline,
        "new": _private("NEWLESION", "New lesion"),
    }
    out = []
    if role in values:
        out.append(hd.sr.QualitativeEvaluation(_private("RECISTROLE", "RECIST 1.1 role"), values[role]))
    out.append(
        hd.sr.QualitativeEvaluation(
            _private("REVIEWSTATUS", "Review status"), _private(lesion.status.upper(), lesion.status.capitalize())
        )
    )
    if lesion.synthetic:
        record = lesion.synthetic
        out.append(hd.sr.QualitativeEvaluation(_private("SYNTHETIC", "Synthetic lesion"), codes.SCT.Yes))
        for value, meaning in (
            (f"TYPE_{record.get('lesion_type') or 'lesion'}", f"lesion type {record.get('lesion_type') or 'lesion'}"),
            (f"ENGINE_{record.get('engine') or 'unknown'}", f"synthesis engine {record.get('engine') or 'unknown'}"),
            (f"SEED_{record.get('seed')}", f"synthesis seed {record.get('seed')}"),
        ):
            out.append(hd.sr.QualitativeEvaluation(_private("SYNTHESIS", "Synthesis"), _private(value, meaning)))
    return out


def _confidence(lesion, algorithm) -> list:
    """The model's mean and maximum lesion probability over the lesion (unitless, 0 to 1)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if lesion.mean_probability is None:
        return []
    return [
        hd.sr.Measurement(codes.DCM.Probability, float(value), codes.UCUM.NoUnits, derivation=derivation, algorithm_id=algorithm)
        for derivation, value in ((codes.SCT.Mean, lesion.mean_probability), (codes.SCT.Maximum, lesion.max_probability))
    ]


def _response_group(report):
    """A follow-up's RECIST 1.1 response: sum of diameters and the target and overall response."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    c = report.comparison
    if not c:
        return None
    target = {
        "CR": codes.DCM.TargetLesionCompleteResponse,
        "PR": codes.DCM.TargetLesionPartialResponse,
        "SD": codes.DCM.TargetLesionStableDisease,
        "PD": codes.DCM.TargetLesionProgressiveDisease,
    }
    evaluations = []
    if c["target_response"] in target:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.DCM.ResponseEvaluation, target[c["target_response"]]))
    overall = c["overall_response"]
    evaluations.append(
        hd.sr.QualitativeEvaluation(
            codes.DCM.CurrentResponse, _private(overall.replace("/", "").replace("-", "")[:16], f"{overall} (RECIST 1.1)")
        )
    )
    measurements = [
        hd.sr.Measurement(
            _private("SOD", "Sum of diameters"),
            float(c["sum_followup_mm"]),
            codes.UCUM.Millimeter,
            method=codes.DCM.RECIST1Point1,
        )
    ]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="RECIST 1.1 response"),
        time_point_context=_time_point(report),
        method=codes.DCM.RECIST1Point1,
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def _make_sr(report, seg, sources, tracking):
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    mm, hu = codes.UCUM.Millimeter, codes.UCUM.HounsfieldUnit
    ml = CodedConcept(value="mL", scheme_designator="UCUM", meaning="milliliter")
    algorithm = _algorithm(report)
    groups = []
    for n, lesion in enumerate(report.lesions, start=1):
        m = lesion.measurement
        ptype, region, laterality = _lesion_codes(lesion)
        sites = [hd.sr.FindingSite(region, laterality=laterality)] if region is not None else None
        measurements = [
            hd.sr.Measurement(codes.SCT.Volume, m.volume_ml, ml),
            hd.sr.Measurement(codes.SCT.Diameter, m.max_diameter_3d_mm, mm, derivation=codes.SCT.Maximum),
            hd.sr.Measurement(codes.SCT.LongAxis, m.long_axis_mm, mm, method=codes.DCM.RECIST1Point1),
            hd.sr.Measurement(codes.SCT.ShortAxis, m.short_axis_mm, mm, method=codes.DCM.RECIST1Point1),
            *_confidence(lesion, algorithm),
        ]
        for derivation, value in (
            (codes.SCT.Mean, m.mean_hu),
            (codes.SCT.StandardDeviation, m.std_hu),
            (codes.SCT.Minimum, m.min_hu),
            (codes.SCT.Maximum, m.max_hu),
            (codes.SCT.Median, m.median_hu),
        ):
            measurements.append(hd.sr.Measurement(codes.DCM.AttenuationCoefficient, value, hu, derivation=derivation))
        evaluations = [
            hd.sr.QualitativeEvaluation(
                CodedConcept(value=name[:16], scheme_designator=PRIVATE_SCHEME, meaning=name.capitalize()),
                CodedConcept(
                    value=a.value[:16].replace(" ", "_") or "unknown",
                    scheme_designator=PRIVATE_SCHEME,
                    meaning=a.value[:64] or "unknown",
                ),
            )
            for name, a in lesion.attributes.items()
        ] + _review_evaluations(lesion)
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking[n - 1], identifier=f"Lesion {lesion.number}"),
                referenced_segment=_referenced_segment(seg, n, sources),
                time_point_context=_time_point(report),
                finding_type=ptype,
                finding_sites=sites,
                measurements=measurements,
                qualitative_evaluations=evaluations,
            )
        )
    response = _response_group(report)
    if response is not None:
        groups.append(response)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=SOFTWARE, manufacturer_name=MANUFACTURER, model_name=__version__
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *sources],
        content=content,
        series_instance_uid=generate_uid(),
        series_number=301,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="PASTA measurement report (research use, not for diagnosis)",
    )


def _write_dicom(context, names) -> None:
    write_seg_sr(context.report, context.image, context.labels, context.folder / "dicom", names)


_DICOM = ("dicom/ct/CT*.dcm",)  # the derived CT series a SEG/SR from a non-DICOM CT references
register(
    ReportFormat(
        "seg",
        "SEG",
        "DICOM Segmentation object",
        ("dicom/seg.dcm",) + _DICOM,
        _write_dicom,
        preselected=False,
        order=10,
        listed=40,
    )
)
register(
    ReportFormat(
        "sr",
        "SR",
        "DICOM structured report (TID 1500 measurements)",
        ("dicom/sr.dcm",) + _DICOM,
        _write_dicom,
        preselected=False,
        order=10,
        listed=50,
    )
)
