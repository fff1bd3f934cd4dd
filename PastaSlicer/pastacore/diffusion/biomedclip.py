"""BiomedCLIP's text tower, read from an open_clip-format folder.

The folder is a copy of the Hugging Face repository
``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``: ``open_clip_config.json``,
``open_clip_pytorch_model.bin`` (the weights) and the tokenizer files (``vocab.txt`` and/or
``tokenizer.json``, ``tokenizer_config.json``); ``config.json`` (the BERT config) is used when
present, else the BERT shape is read from the weights (heads of 64 channels).

Only the text half is built, as open_clip's ``HFTextEncoder`` does it: a Hugging Face BERT
(``transformers``), the ``cls_last_hidden_state_pooler`` (the last hidden state of [CLS]) and
the ``mlp`` projection (Linear -> GELU -> Linear, no biases) to 512; texts are
whitespace-cleaned, tokenised to the config's context length (256) with padding, and the
attention mask is "token != [PAD]". The image tower (and with it open_clip, timm and
torchvision) is not needed. Weights are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import PastaError
from ..networks.checkpoints import load_checkpoint

if TYPE_CHECKING:
    from collections.abc import Sequence


CONFIG, WEIGHTS = "open_clip_config.json", "open_clip_pytorch_model.bin"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json")
SOURCE_HINT = "download it from Hugging Face (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224)"


def folder_problems(folder: str | Path) -> list:
    """What a BiomedCLIP folder lacks (empty when complete)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"the folder {folder}"]
    missing = [name for name in (CONFIG, WEIGHTS) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    return missing


def _clean(text: str) -> str:
    return " ".join(html.unescape(html.unescape(str(text))).split())


def _bert_config(folder: Path, weights: dict):
    from transformers import BertConfig

    path = folder / "config.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("model_type") == "bert":
            return BertConfig(**{k: v for k, v in data.items() if k not in ("architectures",)})
    words = weights["transformer.embeddings.word_embeddings.weight"]
    layers = {int(m.group(1)) for k in weights if (m := re.match(r"transformer\.encoder\.layer\.(\d+)\.", k))}
    hidden = int(words.shape[1])
    return BertConfig(
        vocab_size=int(words.shape[0]),
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=int(weights["transformer.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(weights["transformer.embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(weights["transformer.embeddings.token_type_embeddings.weight"].shape[0]),
    )


def _projection(kind: str, width: int, output: int) -> nn.Module:
    if kind == "mlp":
        hidden = (width + output) // 2
        return nn.Sequential(nn.Linear(width, hidden, bias=False), nn.GELU(), nn.Linear(hidden, output, bias=False))
    if kind == "linear":
        return nn.Linear(width, output, bias=False)
    raise PastaError(f"text projection {kind!r} is not supported (mlp or linear)")


class BiomedCLIPText(nn.Module):
    """Callable: list of texts -> (n, embed_dim) float32 embeddings."""

    def __init__(self, folder: str | Path, device: str = "cpu") -> None:
        super().__init__()
        folder = Path(folder)
        missing = folder_problems(folder)
        if missing:
            raise PastaError(
                f"the BiomedCLIP text encoder folder {folder} lacks {', '.join(missing)}; {SOURCE_HINT} "
                f"and import it with 'pasta models import FOLDER'"
            )
        try:
            import transformers
        except ImportError:
            from ..deps import install_hint

            raise PastaError(
                f"the BiomedCLIP text encoder needs the 'transformers' package: {install_hint('diffusion')}"
            ) from None
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        model_cfg = config.get("model_cfg", config)
        text_cfg = model_cfg.get("text_cfg", {})
        self.context_length = int(text_cfg.get("context_length", 256))
        self.pooler = text_cfg.get("hf_pooler_type", "cls_last_hidden_state_pooler")
        if self.pooler not in ("cls_last_hidden_state_pooler", "cls_pooler", "mean_pooler"):
            raise PastaError(f"text pooler {self.pooler!r} is not supported")
        state = load_checkpoint(folder / WEIGHTS)
        weights = {k[len("text.") :]: v for k, v in state.items() if k.startswith("text.")}
        if "transformer.embeddings.word_embeddings.weight" not in weights:
            raise PastaError(f"{WEIGHTS} holds no Hugging Face text tower (text.transformer.* tensors)")
        bert = _bert_config(folder, weights)
        self.transformer = transformers.BertModel(bert, add_pooling_layer=self.pooler == "cls_pooler")
        self.proj = _projection(text_cfg.get("hf_proj_type", "mlp"), bert.hidden_size, int(model_cfg.get("embed_dim", 512)))
        own = self.state_dict()
        wanted = {k: weights[k] for k in own if k in weights}
        missing = [k for k in own if k not in weights and not k.endswith("position_ids")]
        if missing:
            raise PastaError(f"{WEIGHTS} lacks {len(missing)} text tower tensor(s) ({', '.join(missing[:3])})")
        bad = [k for k in wanted if tuple(wanted[k].shape) != tuple(own[k].shape)]
        if bad:
            raise PastaError(f"{WEIGHTS}: text tower tensors of other shapes than its config ({', '.join(bad[:3])})")
        self.load_state_dict(wanted, strict=False)
        if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        else:
            self.tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
        self.eval().to(device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            [_clean(t) for t in texts], max_length=self.context_length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        attention = (tokens != self.tokenizer.pad_token_id).long()
        out = self.transformer(input_ids=tokens, attention_mask=attention)
        if self.pooler == "cls_pooler":
            pooled = out.pooler_output
        elif self.pooler == "mean_pooler":
            pooled = (out.last_hidden_state * attention[..., None]).sum(1) / attention.sum(1, keepdim=True)
        else:
            pooled = out.last_hidden_state[:, 0]
        return self.proj(pooled).float()
