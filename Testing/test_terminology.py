"""Every terminology code PASTA writes on a segment resolves in Slicer's own terminology logic
(slicer-core's vtkSlicerTerminologiesModuleLogic) once PASTA's contexts are registered, so the
terminology widget never shows "not found"."""

import json

import pytest

from pastacore.resources import load_json
from pastacore.terminology import parse_tag, segment_info, slicer_contexts

slicer = pytest.importorskip("slicer")


def every_term() -> list:
    data = load_json("terminology.json")
    return list(data["structures"]) + [f"{kind}@{organ}" for kind in data["lesions"] for organ in data["structures"]]


@pytest.fixture(scope="module")
def logic(tmp_path_factory):
    from pastacore.terminology import register_slicer_contexts

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    register_slicer_contexts(logic, tmp_path_factory.mktemp("terminology"))
    return logic


def coded(item) -> tuple:
    return (item.GetCodingSchemeDesignator(), item.GetCodeValue(), item.GetCodeMeaning())


def loaded_codes(logic) -> set:
    """Everything Slicer can offer from PASTA's contexts, as (kind, codes...) tuples, read back
    through the logic's own accessors."""
    data = load_json("terminology.json")
    context, anatomy = data["context"], data["anatomic_context"]
    found = set()
    category = slicer.vtkSlicerTerminologyCategory()
    for c in range(logic.GetNumberOfCategoriesInTerminology(context)):
        logic.GetNthCategoryInTerminology(context, c, category)
        for t in range(logic.GetNumberOfTypesInTerminologyCategory(context, category)):
            kind = slicer.vtkSlicerTerminologyType()
            logic.GetNthTypeInTerminologyCategory(context, category, t, kind)
            found.add(("type", coded(category), coded(kind), None))
            for m in range(logic.GetNumberOfTypeModifiersInTerminologyType(context, category, kind)):
                modifier = slicer.vtkSlicerTerminologyType()
                logic.GetNthTypeModifierInTerminologyType(context, category, kind, m, modifier)
                found.add(("type", coded(category), coded(kind), coded(modifier)))
    for r in range(logic.GetNumberOfRegionsInRegionContext(anatomy)):
        region = slicer.vtkSlicerTerminologyType()
        logic.GetNthRegionInRegionContext(anatomy, r, region)
        found.add(("region", coded(region), None))
        for m in range(logic.GetNumberOfRegionModifierInRegion(anatomy, region)):
            modifier = slicer.vtkSlicerTerminologyType()
            logic.GetNthRegionModifierInRegion(anatomy, region, m, modifier)
            found.add(("region", coded(region), coded(modifier)))
    return found


@pytest.fixture(scope="module")
def codes(logic):
    return loaded_codes(logic)


def optional(part):
    return None if part == ("", "", "") else part


@pytest.mark.parametrize("term", every_term())
def test_every_segment_code_resolves_in_slicer(logic, codes, term):
    entry = slicer.vtkSlicerTerminologyEntry()
    tag = segment_info(term).terminology
    assert logic.DeserializeTerminologyEntry(tag, entry)
    parts = {k: (tuple(v) + ("",) * 3)[:3] if isinstance(v, tuple) else v for k, v in parse_tag(tag).items()}
    assert ("type", parts["category"], parts["type"], optional(parts["type_modifier"])) in codes, tag
    if optional(parts["region"]):
        assert ("region", parts["region"], optional(parts["region_modifier"])) in codes, tag


def test_left_and_right_are_modifiers_of_one_organ():
    left, right = parse_tag(segment_info("tumor@left lung").terminology), parse_tag(segment_info("tumor@right lung").terminology)
    assert left["region"] == right["region"] == ("SCT", "39607008", "Lung")
    assert left["region_modifier"] == ("SCT", "7771000", "Left") and right["region_modifier"] == ("SCT", "24028007", "Right")
    kidney = parse_tag(segment_info("left kidney").terminology)
    assert kidney["type"] == ("SCT", "64033007", "Kidney") and kidney["type_modifier"] == ("SCT", "7771000", "Left")


def test_an_unknown_code_is_not_offered(codes):
    assert not any(c[0] == "type" and c[2][1] == "3341006" for c in codes)  # the old "Right lung" concept


def test_contexts_are_valid_term_json(tmp_path):
    from pastacore.terminology import write_slicer_contexts

    terminology, anatomy = slicer_contexts()
    paths = write_slicer_contexts(tmp_path)
    assert [json.loads(p.read_text()) for p in paths] == [terminology, anatomy]
    assert terminology["SegmentationCategoryTypeContextName"] == load_json("terminology.json")["context"]
