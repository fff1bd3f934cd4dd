"""What a text prompt means to a multi-path gCIS model: its 512-d embedding and what it segments.

A prompt is looked up first in the model's table of known prompts (``prompts`` in its config:
text, embedding, and optionally the term of what it segments), which needs no CLIP; any other
text is embedded by CLIP's text tower (open_clip ``ViT-B-32-quickgelu``) once its weights have been
imported (``pasta models import-clip FILE``: the text tower is kept in the model store as
safetensors, with the tokenizer's vocabulary beside it). Without them an unknown prompt is one
line naming the known ones.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import PastaError
from .config import normalized_prompt

if TYPE_CHECKING:
    from ...modelstore.store import ModelStore
    from .clip_text import ClipTextTower

CLIP_MODEL = "clip-vit-b-32-quickgelu"  # its folder in the model store
CLIP_WEIGHTS = "text_tower.safetensors"
IMPORT_HINT = "import CLIP's text weights once with 'pasta models import-clip FILE' (open_clip ViT-B-32-quickgelu, laion400m_e32)"


@dataclass(frozen=True)
class Prompt:
    text: str  # as the user typed it, white space tidied
    embedding: list  # 512 floats
    source: str  # "known" (the model's table) or "clip"
    term: str  # what label 1 is ("tumor@liver"), "" when the text names nothing we know


def known_prompts(config: dict) -> list:
    """The texts of a model's known prompts, in its config's order."""
    return [item["text"] for item in config.get("prompts") or []]


def resolve_prompt(text: str, config: dict, model_name: str = "the model", store: ModelStore | None = None) -> Prompt:
    """The embedding of ``text`` for a multi-path model: from its known prompts, else from CLIP."""
    from ...terminology import term_for_label_name

    wanted = normalized_prompt(text)
    known = known_prompts(config)
    if not wanted:
        listed = f"; known prompts: {', '.join(known)}" if known else ""
        raise PastaError(
            f"{model_name} is a multi-path gCIS model: say what to segment with a prompt (e.g. 'liver tumor'){listed}"
        )
    for item in config.get("prompts") or []:
        if normalized_prompt(item["text"]) == wanted:
            return Prompt(item["text"], item["embedding"], "known", item.get("term") or term_for_label_name(item["text"]) or "")
    folder = clip_folder(store)
    if folder is None:
        listed = f"known prompts: {', '.join(known)}" if known else "it has no known prompts"
        raise PastaError(
            f"{model_name} does not know the prompt {' '.join(text.split())!r} ({listed}); for free text, {IMPORT_HINT}"
        )
    embedding = embed_with_clip([text], folder)[0]
    return Prompt(" ".join(text.split()), embedding, "clip", term_for_label_name(text) or "")


# -- CLIP's text tower in the model store -----------------------------------------------------------


def clip_folder(store: ModelStore | None = None) -> Path | None:
    """The imported CLIP text tower's folder in the model store, or None."""
    from ...modelstore.store import ModelStore

    folder = (store or ModelStore()).root / CLIP_MODEL
    return folder if (folder / CLIP_WEIGHTS).is_file() else None


def embed_with_clip(texts: list, folder: Path) -> list:
    """512-d embeddings (lists of floats) of ``texts`` by the text tower stored in ``folder``."""
    import torch

    from .tokenizer import VOCABULARY_NAME, BpeTokenizer

    tower = load_text_tower(folder / CLIP_WEIGHTS)
    tokens = BpeTokenizer(folder / VOCABULARY_NAME).tokenize(list(texts))
    with torch.inference_mode():
        return tower(tokens).float().tolist()


def load_text_tower(path: Path) -> ClipTextTower:
    """The text tower with the tensors of ``path`` (safetensors or a torch file), loaded strictly."""
    from ...networks.checkpoints import load_checkpoint
    from .clip_text import text_state, tower_for

    state = load_checkpoint(path)
    state = _unwrapped(state, path.name)
    text = text_state(state)
    tower = tower_for(text, path.name)
    expected = tower.state_dict()
    missing = [k for k in expected if k not in text]
    reshaped = [k for k in expected if k in text and tuple(text[k].shape) != tuple(expected[k].shape)]
    if missing or reshaped:
        what = f"{len(missing)} text-tower tensors missing (e.g. {missing[0]})" if missing else ""
        what += ("; " if what else "") + (f"{reshaped[0]} is {tuple(text[reshaped[0]].shape)}" if reshaped else "")
        raise PastaError(f"{path.name} is not the text tower of open_clip ViT-B-32-quickgelu: {what}")
    tower.load_state_dict({k: text[k].float() for k in expected}, strict=True)
    return tower.eval()


def _unwrapped(stored, name: str) -> dict:
    """The state dict inside an open_clip file: bare, under ``state_dict``, with ``module.`` or not."""
    state = stored.get("state_dict", stored) if isinstance(stored, dict) else None
    if not isinstance(state, dict):
        raise PastaError(f"{name} holds no CLIP state dict")
    if state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def import_clip(
    path: str | Path, store: ModelStore | None = None, vocabulary: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Keep the text tower of a CLIP ViT-B-32-quickgelu weight file in the model store (as
    safetensors, with the tokenizer's vocabulary and a model.json); the folder written."""
    from safetensors.torch import save_file

    from ...fileio.atomic import atomic_directory, check_output_dir
    from ...modelstore.store import DESCRIPTION, ModelStore, sha256_of
    from .clip_text import text_state
    from .tokenizer import VOCABULARY_NAME, BpeTokenizer, vocabulary_file

    path = Path(path)
    if not path.is_file():
        raise PastaError(f"{path} is not a file")
    store = store or ModelStore()
    store.root.mkdir(parents=True, exist_ok=True)
    check_output_dir(store.root / CLIP_MODEL, overwrite)
    vocabulary = Path(vocabulary) if vocabulary else vocabulary_file()
    if vocabulary is None or not vocabulary.is_file():
        raise PastaError(
            f"CLIP's tokenizer vocabulary ({VOCABULARY_NAME}) was not found: install it with "
            "'pip install --no-deps open_clip_torch' (its torchvision is not needed) or give the file with --vocabulary"
        )
    BpeTokenizer(vocabulary)  # a damaged vocabulary is refused before anything is written
    tower = load_text_tower(path)
    state = {k: v.contiguous() for k, v in text_state(tower.state_dict()).items()}
    with atomic_directory(store.root / CLIP_MODEL, overwrite=overwrite) as folder:
        save_file(state, str(folder / CLIP_WEIGHTS))
        shutil.copy2(vocabulary, folder / VOCABULARY_NAME)
        files = [
            {"name": n, "sha256": sha256_of(folder / n), "size": (folder / n).stat().st_size}
            for n in (CLIP_WEIGHTS, VOCABULARY_NAME)
        ]
        description = {
            "name": CLIP_MODEL,
            "version": "user",
            "task": "text-encoder",
            "description": "CLIP ViT-B-32-quickgelu text tower: embeds free-text prompts of multi-path gCIS models",
            "weights": CLIP_WEIGHTS,
            "files": files,
            "imported_from": path.name,
            "imported_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "parameters": int(sum(v.numel() for v in state.values())),
        }
        (folder / DESCRIPTION).write_text(json.dumps(description, indent=2))
    return store.root / CLIP_MODEL
