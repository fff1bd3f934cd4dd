"""Attribute-conditioned lesion synthesis (PASTA-Gen style), Qt-free.

- :func:`lesion_types` - the 15 PASTA lesion type keys; :func:`schema.lesion_type` for details.
- :func:`parse_text` - free text -> attributes (+ lesion type, + words not understood).
- :func:`make_plan` - attributes + type + seed -> a readable numeric :class:`SynthesisPlan`.
- :func:`synthesize_lesion` - one lesion into a copy of a CT (image, labels organ 1 / lesion 2,
  segments, our report and a PASTA-Gen ``type.json``).

Backends: ``procedural`` (default, CPU), ``lesiondiffusion`` and ``lesiondiffusion-hybrid``
(pastacore.diffusion; released checkpoints, GPU recommended); see :mod:`.backends`.
Synthetic images are for research use only.
"""

from .backends import backend_choices, backend_names, get_backend  # noqa: F401
from .engine import SynthesisResult, read_attributes, synthesize_lesion  # noqa: F401
from .plan import SynthesisPlan, make_plan  # noqa: F401
from .schema import LesionType, lesion_type, lesion_types, normalize_attributes  # noqa: F401
from .text import ParsedText, parse_text  # noqa: F401
