"""What a click does, on a scene given to it: Segment, Preview/Apply a lesion, Measure, Export,
manage models, fine-tune a model on edited segmentations, pretrain a network on a folder of CTs, classify pathology images. Qt-free (no ``qt``, ``ctk`` or
``slicer.util`` GUI helpers), so the Slicer modules and the web app drive the same code, and
the tests drive it on ``slicer-core``.

Each controller takes the MRML scene and a task runner (:mod:`pastacore.tasks.runners`): heavy
work runs as a job in the task process; reading inputs from the scene and writing results
into it happen on the caller's thread, when the runner's handle is polled. No helper node is
left in the scene.
"""

from .finetune import FinetuneCase, FinetuneController, FinetuneRequest  # noqa: F401
from .hub import HubController  # noqa: F401
from .jobs import Outcome  # noqa: F401
from .patches import PatchController, PatchPrediction  # noqa: F401
from .pretrain import PretrainController, PretrainRequest, StartList, TrainingStart  # noqa: F401
from .report import ReportController  # noqa: F401
from .segment import SegmentController, SegmentRequest  # noqa: F401
from .synth import DatasetRequest, SynthController, SynthRequest  # noqa: F401
