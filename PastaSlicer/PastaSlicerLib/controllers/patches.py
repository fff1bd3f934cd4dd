"""Pathology patches with PatchTCGA's encoders: classify a loaded 2-D image (a one-slice volume)
tile by tile and add the class-probability heat map as a coloured volume on the image's own grid;
train a few-shot head from labelled patches. Both run as jobs in the task process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pastacore.errors import PastaError

from .jobs import require_alive, start_action

HEAT_OF = "PASTA.HeatMapOf"  # heat map node attribute: the ID of the image it was computed on
HEAT_CLASS = "PASTA.HeatMapClass"
COLOR_IDS = ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLColorTableNodeFileViridis.txt", "vtkMRMLColorTableNodeRainbow")


@dataclass
class PatchPrediction:
    """A classified image: the heat map node and the summary (``label``: the image's class, the class
    with the highest probability averaged over the tiles; ``mean_probabilities``; ``tiles``...)."""

    heatmap: object
    summary: dict

    def describe(self) -> str:
        means = dict(zip(self.summary["classes"], self.summary["mean_probabilities"]))
        return f"{self.summary['label']} (mean p {means[self.summary['label']]:.2f} over {self.summary['tiles']} tiles)"


class PatchController:
    def __init__(self, scene, runner, store=None):
        self.scene, self.runner, self.store = scene, runner, store

    # -- choices ----------------------------------------------------------------------------
    def _store(self):
        from pastacore.modelstore.store import ModelStore

        return self.store if self.store is not None else ModelStore()

    def encoders(self) -> list:
        """Names of the installed PatchTCGA encoders."""
        from pastacore.families.patchtcga.patches import installed_encoders

        return [m.name for m in installed_encoders(self._store())]

    def import_encoder(self, path, config_path, name=None) -> str:
        """Store a PatchTCGA weight file with its config (loaded strictly first); its name."""
        from pastacore.families import read_model_config

        config = read_model_config(config_path)
        if config.get("family") != "patchtcga":
            raise PastaError(f"{Path(config_path).name} is not a PatchTCGA config (family {config.get('family')!r})")
        return self._store().import_family_model(path, config, name=name or None).name

    @staticmethod
    def head_classes(head) -> list:
        """The classes of a head written by a head training (from HEAD.json beside it); [] if unknown."""
        from pastacore.classify.headfile import metrics_path

        try:
            return [str(c) for c in json.loads(metrics_path(head).read_text(encoding="utf-8")).get("classes", [])]
        except (OSError, ValueError, AttributeError):
            return []

    @staticmethod
    def image_array(node):
        """(H, W, 3) uint8 RGB of a one-slice volume node (a PNG/TIFF loaded into Slicer)."""
        import slicer.util

        from pastacore.families.patchtcga.images import rgb_from_array

        if node is None or node.GetImageData() is None:
            raise PastaError("choose a loaded 2-D image")
        slices = node.GetImageData().GetDimensions()[2]
        if slices != 1:
            raise PastaError(f"'{node.GetName()}' is a 3-D volume ({slices} slices); choose a 2-D image (one slice)")
        return rgb_from_array(slicer.util.arrayFromVolume(node), f"'{node.GetName()}'")

    def load_image(self, path, name=None):
        """A 2-D image file (PNG, TIFF, JPEG) as Slicer loads it: a one-slice vector volume with the
        pixels in ITK's order and the grid SimpleITK reads (front ends without Slicer's readers)."""
        import numpy as np
        import slicer.util

        from pastacore.families.patchtcga.images import pixel_grid, read_rgb
        from pastacore.geometry.grid import Grid
        from pastacore.mrml.volumes import _vtk_matrix

        rgb = read_rgb(path)
        grid = pixel_grid(path, rgb.shape[1], rgb.shape[0])
        direction = np.eye(3)
        direction[:2, :2] = np.reshape(grid.direction, (2, 2))
        lps = Grid((1, rgb.shape[0], rgb.shape[1]), (*grid.spacing, 1.0), (*grid.origin, 0.0), direction)
        node = self.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", self.scene.GenerateUniqueName(name or Path(path).stem))
        slicer.util.updateVolumeFromArray(node, rgb[None])
        node.SetIJKToRASMatrix(_vtk_matrix(lps.ijk_to_ras()))
        node.CreateDefaultDisplayNodes()
        return node

    # -- classify ---------------------------------------------------------------------------
    def classify(
        self, image, encoder, head, tile=224, class_name=None, config=None, device="auto", on_progress=None, on_finished=None
    ):
        """Classify ``image`` tile by tile; the Outcome's value is a :class:`PatchPrediction` whose
        heat map (p(``class_name``) per tile) is a new scalar volume on the image's grid."""
        import numpy as np

        from pastacore.actions.patch_heatmap import PatchHeatmapInputs, PatchHeatmapOptions
        from pastacore.tasks.exchange import in_job_folder, load_volume

        options = PatchHeatmapOptions(
            encoder=str(encoder or ""), head=str(head or ""), config=str(config or ""), tile=int(tile),
            class_name=class_name or "", device=device, store=str(self.store.root) if self.store is not None else "",
        )  # fmt: skip
        options.check()
        rgb = self.image_array(image)

        def read(result, folder):
            require_alive(self.scene, image, "image")
            values = load_volume(folder, result["volumes"]["heat"]).array[0]
            return PatchPrediction(self._add_heatmap(image, values, result["class_name"]), result)

        return start_action(
            self.runner, "patch_heatmap", options, PatchHeatmapInputs(in_job_folder("image.npy")), read, on_progress,
            on_finished, describe=lambda value: f"{image.GetName()}: {value.describe()}",
            prepare=lambda folder: np.save(Path(folder) / "image.npy", rgb, allow_pickle=False),
        )  # fmt: skip

    def _add_heatmap(self, image, values, class_name):
        import slicer.util
        import vtk

        node = self.scene.AddNewNodeByClass(
            "vtkMRMLScalarVolumeNode", self.scene.GenerateUniqueName(f"{image.GetName()} p({class_name})")
        )
        slicer.util.updateVolumeFromArray(node, values.astype("float32")[None])
        matrix = vtk.vtkMatrix4x4()
        image.GetIJKToRASMatrix(matrix)
        node.SetIJKToRASMatrix(matrix)
        node.SetAttribute(HEAT_OF, image.GetID())
        node.SetAttribute(HEAT_CLASS, str(class_name))
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
        color = next((c for c in COLOR_IDS if self.scene.GetNodeByID(c) is not None), None)
        if color is not None:
            display.SetAndObserveColorNodeID(color)
        return node

    # -- train a head -----------------------------------------------------------------------
    def train_head(
        self, patches, encoder, out, labels=None, config=None, kind="linear", folds=5, device="auto", overwrite=False,
        on_progress=None, on_finished=None,
    ):  # fmt: skip
        """Train a head on the patches in the folder ``patches`` (labelled by the CSV ``labels``, or by
        sub-folder) and write ``out`` (HEAD.pt) and HEAD.json; the Outcome's value is HEAD.json's content."""
        from pastacore.actions.patch_head import PatchHeadInputs, PatchHeadOptions
        from pastacore.classify.headfile import HEAD_SUFFIXES, metrics_path
        from pastacore.fileio.atomic import check_outputs

        options = PatchHeadOptions(
            encoder=str(encoder or ""), config=str(config or ""), kind=kind, folds=int(folds), device=device,
            store=str(self.store.root) if self.store is not None else "",
        )  # fmt: skip
        options.check()
        if not patches or not out:
            raise PastaError("choose the folder of labelled patches and where to write the head")
        check_outputs([(out, HEAD_SUFFIXES), metrics_path(out)], inputs=(patches, labels), overwrite=overwrite)

        def describe(result):
            accuracy = result["accuracy"]["mean"]
            shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
            return f"Head written to {Path(out).name}: {result['n_cases']} patches, cross-validated accuracy {shown}."

        return start_action(
            self.runner, "patch_head", options, PatchHeadInputs(str(patches), str(labels or "")),
            lambda result, folder: result, on_progress, on_finished, describe,
            output={"out": str(out), "overwrite": bool(overwrite)},
        )  # fmt: skip
