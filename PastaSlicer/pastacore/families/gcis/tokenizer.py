"""CLIP's byte-level BPE tokenizer, as open_clip tokenizes a prompt for ``ViT-B-32-quickgelu``.

Text is cleaned (``ftfy.fix_text``, HTML entities undone twice, runs of white space made one space,
lower case), split into words, numbers one digit at a time, and runs of other symbols (plus the
English clitics 's 't 're 've 'm 'll 'd); each piece's UTF-8 bytes become printable characters and
are merged by the ranked merges of the vocabulary file, the last symbol of a piece carrying ``</w>``.
Token ids: the 256 byte characters, the same with ``</w>``, one per merge, then ``<start_of_text>``
and ``<end_of_text>``. A prompt becomes ``[start] + ids + [end]``, cut to 77 (the end token kept
last) and padded with 0.

The vocabulary (``bpe_simple_vocab_16e6.txt.gz``, OpenAI's, MIT licence) ships inside the
open_clip wheel; :func:`vocabulary_file` finds it through the installed distribution's file list
without importing open_clip (whose import needs torchvision).
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import PastaError

if TYPE_CHECKING:
    import torch

CONTEXT_LENGTH = 77
VOCABULARY_NAME = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # merges used: the vocabulary holds 49408 tokens in all
SPECIAL = ("<start_of_text>", "<end_of_text>")
# distributions that ship the vocabulary file (open_clip's wheel, OpenAI's CLIP packages)
DISTRIBUTIONS = ("open_clip_torch", "open-clip-torch", "openai-clip", "clip-anytorch")
# the pieces: special tokens, clitics, letter runs, single digits, runs of anything else but spaces
PATTERN = r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"


def vocabulary_file() -> Path | None:
    """The vocabulary file of an installed open_clip (or OpenAI CLIP) distribution, or None."""
    from importlib import metadata

    for name in DISTRIBUTIONS:
        try:
            files = metadata.files(name) or []
        except metadata.PackageNotFoundError:
            continue
        for file in files:
            if file.name == VOCABULARY_NAME:
                path = Path(str(file.locate()))
                if path.is_file():
                    return path
    return None


@lru_cache
def byte_characters() -> dict:
    """Byte value -> printable character: printable Latin-1 bytes stand for themselves, the other
    68 bytes take the characters from U+0100 on, in byte order. The table's order (the printable
    bytes first, then the others) is the order of the first 256 token ids."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class BpeTokenizer:
    """``tokenize(["liver tumor"])`` -> (N, 77) int64 token ids (see the module docstring)."""

    def __init__(self, vocabulary: str | Path) -> None:
        import regex

        try:
            lines = gzip.open(vocabulary).read().decode("utf-8").split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise PastaError(f"cannot read the CLIP vocabulary {Path(vocabulary).name} ({exc})") from None
        merges = [tuple(line.split()) for line in lines[1 : MERGES + 1]]
        if len(merges) != MERGES or any(len(m) != 2 for m in merges):
            raise PastaError(f"{Path(vocabulary).name} is not CLIP's BPE vocabulary ({MERGES} merges expected)")
        symbols = list(byte_characters().values())
        tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + list(SPECIAL)
        self.ids = {token: index for index, token in enumerate(tokens)}
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.start, self.end = self.ids[SPECIAL[0]], self.ids[SPECIAL[1]]
        self.pattern = regex.compile(PATTERN, regex.IGNORECASE)
        self._merged: dict = {s: (s,) for s in SPECIAL}

    @staticmethod
    def clean(text: str) -> str:
        """ftfy's repair, HTML entities undone (twice), white space collapsed, lower case."""
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return " ".join(text.split()).lower()

    def merge(self, piece: str) -> tuple:
        """The BPE symbols of one piece (already mapped to byte characters)."""
        if piece in self._merged:
            return self._merged[piece]
        word = [*piece[:-1], piece[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._merged[piece] = tuple(word)
        return self._merged[piece]

    def encode(self, text: str) -> list:
        """Token ids of ``text`` without the start and end tokens."""
        table = byte_characters()
        ids = []
        for piece in self.pattern.findall(self.clean(text)):
            mapped = "".join(table[b] for b in piece.encode("utf-8"))
            ids.extend(self.ids[symbol] for symbol in self.merge(mapped))
        return ids

    def tokenize(self, texts: list, context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
        """(len(texts), context_length) int64 tensor: start, ids, end, zeros; a long text is cut
        with its end token kept in the last place."""
        import torch

        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.start, *self.encode(text), self.end]
            if len(ids) > context_length:
                ids = ids[: context_length - 1] + [self.end]
            result[row, : len(ids)] = torch.tensor(ids)
        return result
