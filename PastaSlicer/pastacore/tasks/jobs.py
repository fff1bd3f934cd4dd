"""The jobs a front end runs in the task process: each reads its inputs from the job folder,
calls the core, and writes its outputs back there. ``params`` is plain JSON.

Every job has the signature ``job(folder, params, progress) -> dict`` and is registered in
:data:`JOBS` under the name a runner starts it by. Volumes travel through
:mod:`.exchange`; a job's dict result is what the front end reads back on its main thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from .exchange import box_from_list, load_volume, save_volume

if TYPE_CHECKING:
    from collections.abc import Callable


JOBS = {}


def job(name: str) -> Callable[[Callable], Callable]:
    def register(function):
        JOBS[name] = function
        return function

    return register


def run_job(
    name: str,
    folder: str | Path,
    params: dict,
    progress: Callable[[float, str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> dict:
    """Run the job ``name`` on ``folder`` (the task process calls this; so does the inline runner)."""
    function = JOBS.get(name)
    if function is None:
        raise PastaError(f"unknown job {name!r}; known: {', '.join(sorted(JOBS))}")
    report = progress or (lambda fraction, message="": None)
    return function(Path(folder), dict(params), report, is_cancelled)


def _optional_volume(folder, name):
    return load_volume(folder, name) if name else None


@job("segment")
def segment(
    folder: Path, params: dict, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool] | None = None
) -> dict:
    """Inputs: ``image`` (+ ``organ`` label map, ``roi_box``); output volume ``labels``."""
    from ..inference.segment import segment_volume
    from ..terminology import segments_to_dict

    result = segment_volume(
        load_volume(folder, params["image"]),
        params.get("model") or None,
        device=params.get("device", "auto"),
        tta=bool(params.get("tta")),
        overlap=float(params.get("overlap", 0.5)),
        organ_mask=_optional_volume(folder, params.get("organ")),
        roi_box=box_from_list(params.get("roi_box")),
        whole_body=bool(params.get("whole_body")),
        min_lesion_mm3=float(params.get("min_lesion_mm3", 0.0)),
        progress=progress,
        is_cancelled=is_cancelled,
    )
    save_volume(result.labels, folder, "labels")
    return {
        "labels": "labels",
        "segments": segments_to_dict(result.segments),
        "model": result.model,
        "device": result.device,
        "seconds": round(result.seconds, 2),
        "notes": result.notes,
        "warnings": result.warnings,
        "candidates": result.candidates_json(),
    }


@job("synthesize")
def synthesize(
    folder: Path, params: dict, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool] | None = None
) -> dict:
    """Inputs: ``image`` (+ ``organ`` labels with ``organ_names``, ``roi_box``); outputs ``image``
    (the CT with the lesion) and ``labels`` (organ 1, lesion 2)."""
    from ..synthesis import synthesize_lesion
    from ..terminology import segments_to_dict

    names = {int(k): v for k, v in (params.get("organ_names") or {}).items()} or None
    result = synthesize_lesion(
        load_volume(folder, params["image"]),
        organ_labels=_optional_volume(folder, params.get("organ")),
        organ_names=names,
        roi_box=box_from_list(params.get("roi_box")),
        lesion_type=params.get("lesion_type") or None,
        attributes=params.get("attributes") or None,
        seed=int(params.get("seed", 0)),
        backend=params.get("backend") or "procedural",
        backend_options=params.get("backend_options") or None,
        progress=progress,
        is_cancelled=is_cancelled,
    )
    save_volume(result.image, folder, "synthetic")
    save_volume(result.labels, folder, "lesion_labels")
    return {
        "image": "synthetic",
        "labels": "lesion_labels",
        "segments": segments_to_dict(result.segments),
        "report": result.report,
        "type_json": result.type_json,
        "plan": result.plan.describe(),
        "not_understood": list(result.not_understood),
    }


@job("dataset")
def dataset(
    folder: Path, params: dict, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool] | None = None
) -> dict:
    """A synthetic dataset written straight to ``params["output_dir"]`` (see ``generate_dataset``)."""
    from ..synthesis import generate_dataset

    return generate_dataset(**params, progress=progress, is_cancelled=is_cancelled)


@job("report")
def report(
    folder: Path, params: dict, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool] | None = None
) -> dict:
    """Inputs ``image`` and ``labels`` (values 1..N named by ``names``); writes the report folder."""
    from ..report.export import make_report, write_report
    from ..report.model import AttributeValue, CaseInfo, ModelProvenance

    image, labels = load_volume(folder, params["image"]), load_volume(folder, params["labels"])
    names = {int(k): v for k, v in params.get("names", {}).items()}
    attributes = {
        int(n): {a: AttributeValue(**v) for a, v in values.items()} for n, values in (params.get("attributes") or {}).items()
    }
    review = review_arguments(params)
    if params.get("baseline_image"):
        registration = _register(folder, params["baseline_image"], image, lambda f, m="": progress(0.1 * f, m))
        review.update(to_baseline=registration.to_baseline, registration=registration.describe())
    case_report = make_report(
        image,
        labels,
        case=CaseInfo(**params["case"]),
        lesion_labels=params.get("lesion_labels"),
        label_names=names,
        attributes=attributes or None,
        models=[ModelProvenance(**m) for m in params.get("models", [])],
        progress=lambda f, m="": progress(0.1 + 0.2 * f, m),
        **review,
    )
    written = write_report(
        case_report,
        image,
        labels,
        params["out_dir"],
        tuple(params["formats"]),
        overwrite=bool(params.get("overwrite")),
        progress=lambda f, m="": progress(0.3 + 0.7 * f, m),
        baseline_dir=params.get("baseline_dir"),
    )
    return {
        "written": written,
        "out_dir": str(params["out_dir"]),
        "lesions": len(case_report.lesions),
        "comparison": case_report.comparison,
        "recist": case_report.recist,
    }


def review_arguments(params: dict) -> dict:
    """make_report's candidates, confirmations, floor, targets and baseline from a job's JSON params."""
    from ..candidates import Floor, candidates_from_json

    out = {
        "candidates": candidates_from_json(params["candidates"]) if params.get("candidates") is not None else None,
        "confirmed": {int(k): v for k, v in (params.get("confirmed") or {}).items()},
        "floor": Floor(**params["floor"]) if params.get("floor") else None,
        "targets": params.get("targets") or None,
    }
    if params.get("baseline_dir"):
        from ..report.followup import load_report

        out["baseline"] = load_report(params["baseline_dir"])
    return out


def _register(folder, baseline_name, followup, progress):
    from ..report.registration import register

    return register(load_volume(folder, baseline_name), followup, progress)


@job("compare")
def compare_reports(
    folder: Path, params: dict, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool] | None = None
) -> dict:
    """RECIST 1.1 response between ``baseline_dir`` and ``followup_dir`` (report folders); with
    volumes ``baseline_image`` and ``followup_image``, after registering them."""
    from ..report.followup import compare, load_report

    baseline, followup = load_report(params["baseline_dir"]), load_report(params["followup_dir"])
    to_baseline, how = None, ""
    if params.get("baseline_image"):
        registration = _register(
            folder, params["baseline_image"], load_volume(folder, params["followup_image"]), lambda f, m="": progress(0.9 * f, m)
        )
        to_baseline, how = registration.to_baseline, registration.describe()
    result = compare(baseline, followup, to_baseline, how).to_dict()
    progress(1.0, "compared")
    return result


@job("attributes")
def attributes(
    folder: Path, params: dict, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool] | None = None
) -> dict:
    """The five report attributes of each lesion of ``labels`` (values 1..N named by ``names``)."""
    from dataclasses import asdict

    from ..classify.predict import load_attribute_model, predict_lesion_attributes
    from ..deps import torch_device_info
    from ..report.measure import measure_lesions

    image, labels = load_volume(folder, params["image"]), load_volume(folder, params["labels"])
    names = {int(k): v for k, v in params.get("names", {}).items()}
    device = torch_device_info(params.get("device", "auto")).kind
    model = load_attribute_model(params["head"], params.get("encoder") or None, device=device)
    measurements = measure_lesions(image, labels, label_names=names)
    predicted = predict_lesion_attributes(image, labels, measurements, model, device, progress=progress, cancelled=is_cancelled)
    return {
        "attributes": {str(n): {a: asdict(v) for a, v in values.items()} for n, values in predicted.items()},
        "models": [asdict(m) for m in model.models],
    }


@job("finetune")
def finetune(
    folder: Path, params: dict, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool] | None = None
) -> dict:
    """Inputs: ``cases`` and ``val_cases`` ([{"name", "image", "labels"}] volumes; labels 1 = organ,
    2 = lesion); fine-tunes ``model`` with ``settings`` (FinetuneSettings fields), writes the
    model folder and imports it into the store (``store`` root, None = the user's) as ``name``."""
    from ..fileio.atomic import atomic_directory
    from ..modelstore.store import ModelStore
    from ..training.cases import load_case
    from ..training.finetune import FinetuneSettings
    from ..training.finetune import finetune as run_finetune
    from ..training.model_folder import write_model_folder
    from ..training.start_model import load_start_model

    store = ModelStore(params.get("store") or None)
    name = str(params["name"])
    if params.get("start"):  # a MIS-FM / PyMIC network: a checkpoint with its config, or a pretrain folder
        from ..families.pymic.start import start_from

        start = start_from(params["start"], params.get("start_config") or None)
    else:
        start = load_start_model(params.get("model") or None, store)
    settings = FinetuneSettings(**(params.get("settings") or {}))
    options = {
        "lesion_labels": tuple(params.get("lesion_labels") or (2,)),
        "organ_labels": tuple(params.get("organ_labels") or ()),
        "organ_source": params.get("organ_source", "auto"),
    }

    def cases(key):
        return [
            load_case(load_volume(folder, c["image"]), load_volume(folder, c["labels"]), start, name=c["name"], **options)
            for c in params.get(key) or []
        ]

    progress(0.0, "reading the cases")
    train_cases, val_cases = cases("cases"), cases("val_cases")
    result = run_finetune(
        train_cases,
        start,
        settings,
        val_cases=val_cases,
        progress=lambda f, m="": progress(0.02 + 0.93 * f, m),
        is_cancelled=is_cancelled,
    )
    with atomic_directory(folder / "model") as model_folder:
        description = write_model_folder(model_folder, name, start, settings, train_cases, result, result.log.seconds)
    progress(0.97, "adding the model to the model list")
    installed = store.import_file(folder / "model", name=name, overwrite=bool(params.get("overwrite")))
    progress(1.0, f"model {installed.name} added")
    return {
        "model": installed.name,
        "path": str(installed.path),
        "validation": result.validation,
        "training_loss": description["training_loss"],
        "steps": settings.steps,
    }


@job("pretrain")
def pretrain(
    folder: Path, params: dict, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool] | None = None
) -> dict:
    """VolF pretraining of ``images`` (paths) into the folder ``out`` with ``options``
    (:class:`~pastacore.actions.pretrain.PretrainOptions` fields); returns what log.json holds
    (without the per-step curves) and ``out``."""
    from ..actions.options import options_from_dict
    from ..actions.pretrain import PretrainOptions
    from ..actions.pretrain import run as run_pretrain

    options = options_from_dict(PretrainOptions, params.get("options"))
    log = run_pretrain(options, list(params["images"]), params["out"], progress=progress, is_cancelled=is_cancelled)
    return {k: v for k, v in log.items() if k not in ("loss", "foreground_dice")} | {"final_loss": log["loss"][-1]}
