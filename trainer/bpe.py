"""A BPE tokenizer for prepared folders (`bilevel data prepare --tokenizer bpe:8192`).

SentencePiece (Debian's python3-sentencepiece: a maintained C++ library with Python
bindings, installable here without pip) trains a BPE model on the training split only,
set up to be lossless on bytes: identity normalisation, no dummy prefix, whitespace kept,
unknown characters as byte pieces (byte_fallback). Each token's UTF-8 byte count is then
exact (a byte piece is 1 byte, another piece its text's bytes with U+2581 as a space),
and the counts of a split sum to its bytes: val_bpb stays exact in bits per byte (the sum
of token losses over the bytes they cover). Byte-level stays the default.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, Optional

import numpy as np

from trainer.hparams import InvalidConfig

CHUNK = 1 << 20
# Text the model is trained on, at most (a sample of its lines is used).
TRAIN_SAMPLE_BYTES = 256 << 20


def parse_tokenizer(spec: str) -> Optional[int]:
    """None for "byte"; the vocabulary size for "bpe:N" (512 <= N <= 65536)."""
    if spec == "byte":
        return None
    m = re.fullmatch(r"bpe:(\d+)", spec)
    if not m or not 512 <= int(m.group(1)) <= 65536:
        raise InvalidConfig(
            f"--tokenizer must be byte or bpe:N with 512 <= N <= 65536, got {spec!r}"
        )
    return int(m.group(1))


def sentencepiece() -> Any:
    try:
        import sentencepiece as spm  # type: ignore[import-not-found]
    except ImportError:
        raise InvalidConfig(
            "--tokenizer bpe needs SentencePiece: apt-get install python3-sentencepiece"
        ) from None
    return spm


def text_chunks(f: BinaryIO, limit: Optional[int] = None) -> Iterator[str]:
    """A valid UTF-8 file as text pieces of about CHUNK bytes, cut after a newline."""
    rest, read = b"", 0
    while limit is None or read < limit:
        block = f.read(CHUNK)
        read += len(block)
        data = rest + block
        if not block:
            if data:
                yield data.decode("utf-8")
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # no newline: keep the last character (maybe incomplete) for later
            cut = len(data) - 1
            while cut > 0 and (data[cut] & 0xC0) == 0x80:
                cut -= 1
        rest = data[cut:]
        if cut:
            yield data[:cut].decode("utf-8")


def train_model(train_text: Path, vocab: int) -> bytes:
    spm = sentencepiece()
    with open(train_text, "rb") as f:
        lines = (
            line
            for text in text_chunks(f, TRAIN_SAMPLE_BYTES)
            for line in text.split("\n")
        )
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines,
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab,
            byte_fallback=True,
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            split_digits=True,
            character_coverage=0.9995,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            max_sentence_length=1 << 16,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            minloglevel=2,
        )
    return model.getvalue()


def piece_bytes(sp: Any) -> np.ndarray:
    """UTF-8 bytes each token stands for (0 for unknown and control pieces)."""
    table = np.zeros(sp.get_piece_size(), dtype=np.uint8)
    for i in range(sp.get_piece_size()):
        if sp.is_byte(i):
            table[i] = 1
        elif not (sp.is_unknown(i) or sp.is_control(i)):
            table[i] = len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
    return table


def encode_split(
    sp: Any, table: np.ndarray, src: Path, tokens: Path, nbytes: Path
) -> int:
    """A split's text as uint16 ids and uint8 byte counts; checks the counts sum to its bytes."""
    n, covered = 0, 0
    with open(src, "rb") as f, open(tokens, "wb") as ft, open(nbytes, "wb") as fb:
        for text in text_chunks(f):
            ids = np.asarray(sp.encode(text), dtype=np.uint16)
            counts = table[ids]
            covered += int(counts.sum(dtype=np.int64))
            ids.tofile(ft)
            counts.tofile(fb)
            n += len(ids)
    if covered != src.stat().st_size:
        raise RuntimeError(
            f"BPE token bytes sum to {covered}, the text has {src.stat().st_size}"
        )
    return n


def retokenize(folder: Path, vocab: int) -> Dict[str, Any]:
    """Byte-level train.bin/val.bin (valid UTF-8) of `folder` into BPE tokens, in place."""
    spm = sentencepiece()
    model = train_model(folder / "train.bin", vocab)
    (folder / "tokenizer.model").write_bytes(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    table = piece_bytes(sp)
    counts = {}
    for split in ("train", "val"):
        src = folder / f"{split}.bin"
        text = folder / f"{split}.txt.tmp"
        src.replace(text)
        counts[split] = encode_split(
            sp, table, text, src, folder / f"{split}_bytes.bin"
        )
        counts[f"{split}_bytes"] = text.stat().st_size
        text.unlink()
    return {
        "vocab_size": int(sp.get_piece_size()),
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
        "train_text_bytes": counts["train_bytes"],
        "val_text_bytes": counts["val_bytes"],
        "tokenizer": {
            "kind": "sentencepiece-bpe",
            "library": f"sentencepiece {getattr(spm, '__version__', '?')}",
            "model": "tokenizer.model",
        },
    }
