"""python3 -m trainer.prepare OUT SOURCE...: text into a prepared folder (the cache format).

Sources, in the order given: folders (.txt, .jsonl, and their .gz, recursively, sorted by
path), single such files, and .parquet files (a "text" column; needs pyarrow). Documents
are joined with "\\n\\n" into one byte stream and split by the fixed rule of
trainer/data.py (32 KiB blocks, every tenth is validation), streamed to disk so the
corpus never has to fit in memory. meta.json is written last: a folder without it is
not prepared. `--data OUT` then trains on it (`bilevel data prepare` downloads URLs first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple

from trainer.bpe import parse_tokenizer
from trainer.data import (
    BLOCK_BYTES,
    BPE_FORMAT,
    FORMAT_VERSION,
    MIN_TRAIN_BYTES,
    VAL_EVERY,
    VOCAB_SIZE,
    _documents,
    file_documents,
)
from trainer.hparams import InvalidConfig

TEXT_SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz")


def parquet_documents(f: Path) -> Iterator[Tuple[str, bytes]]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found]
    except ImportError:
        raise InvalidConfig(
            f"{f.name}: Parquet needs pyarrow, which this Python lacks; convert it to .jsonl"
        ) from None
    n = 0
    for batch in pq.ParquetFile(f).iter_batches(columns=["text"]):
        for text in batch.column(0).to_pylist():
            n += 1
            if isinstance(text, str):
                yield f"{f.name}:{n}", text.encode("utf-8")


def source_documents(source: Path) -> Iterator[Tuple[str, bytes]]:
    if source.is_dir():
        yield from _documents(source, TEXT_SUFFIXES)
    elif source.name.endswith(".parquet"):
        yield from parquet_documents(source)
    elif source.name.endswith(TEXT_SUFFIXES):
        yield from file_documents(source, source.name)
    else:
        raise InvalidConfig(
            f"{source}: not a folder, .txt, .jsonl (.gz) or .parquet file"
        )


class SplitWriter:
    """Routes the stream's bytes to train.bin or val.bin by 32 KiB block, as it comes."""

    def __init__(
        self, train: BinaryIO, val: BinaryIO, char_aligned: bool = False
    ) -> None:
        self.files = (train, val)
        # For BPE: a character starting in a block goes wholly with it, so each split is
        # valid UTF-8 (block boundaries move by at most 3 bytes).
        self.char_aligned = char_aligned
        self.offset = 0
        self.counts = [0, 0]
        self.digest = hashlib.sha256(FORMAT_VERSION.encode())

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        i = 0
        while i < len(chunk):
            block, within = divmod(self.offset, BLOCK_BYTES)
            take = min(BLOCK_BYTES - within, len(chunk) - i)
            while (
                self.char_aligned
                and i + take < len(chunk)
                and chunk[i + take] & 0xC0 == 0x80
            ):
                take += 1
            which = 1 if block % VAL_EVERY == VAL_EVERY - 1 else 0
            self.files[which].write(chunk[i : i + take])
            self.counts[which] += take
            self.offset += take
            i += take


def write_ones(path: Path, n: int) -> None:
    """Bytes per token: 1 for each byte-level token, written in bounded pieces."""
    piece = b"\x01" * min(n, 1 << 20)
    with open(path, "wb") as f:
        left = n
        while left > 0:
            f.write(piece[: min(left, len(piece))])
            left -= min(left, len(piece))


def stream_sources(sources: Sequence[Path], w: SplitWriter) -> int:
    docs = 0
    for source in sources:
        if not source.exists():
            raise InvalidConfig(f"{source} does not exist")
        for name, text in source_documents(source):
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidConfig(
                    f"{name}: not UTF-8 text ({e.reason} at byte {e.start})"
                ) from None
            w.write((b"\n\n" if docs else b"") + text)
            docs += 1
    if docs == 0:
        raise InvalidConfig("the sources have no documents")
    return docs


def prepare(
    sources: Sequence[Path], out: Path, vocab: Optional[int] = None
) -> Dict[str, object]:
    """Write `out`; `vocab` set: BPE with that vocabulary (trainer/bpe.py), else bytes."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # not prepared until written again
    tmp = out / ".prepare-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / "train.bin", "wb") as train, open(tmp / "val.bin", "wb") as val:
        w = SplitWriter(train, val, char_aligned=vocab is not None)
        docs = stream_sources(sources, w)
    n_train, n_val = w.counts
    if n_train < MIN_TRAIN_BYTES:
        raise InvalidConfig(
            f"the training split has {n_train} bytes; it needs at least {MIN_TRAIN_BYTES}"
        )
    meta: Dict[str, object] = {
        "key": w.digest.hexdigest()[:16],
        "source": [str(s) for s in sources],
        "format": FORMAT_VERSION,
        "vocab_size": VOCAB_SIZE,
        "train_tokens": n_train,
        "val_tokens": n_val,
        "block_bytes": BLOCK_BYTES,
        "val_every": VAL_EVERY,
        "documents": docs,
    }
    if vocab is None:
        write_ones(tmp / "train_bytes.bin", n_train)
        write_ones(tmp / "val_bytes.bin", n_val)
    else:
        from trainer.bpe import retokenize

        meta.update(retokenize(tmp, vocab), format=BPE_FORMAT)
        meta["key"] = f"{meta['key']}-bpe{vocab}"
        (tmp / "tokenizer.model").replace(out / "tokenizer.model")
    for name in ("train.bin", "val.bin", "train_bytes.bin", "val_bytes.bin"):
        (tmp / name).replace(out / name)
    tmp.rmdir()
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m trainer.prepare", description=__doc__)
    p.add_argument("out", help="the prepared folder to write")
    p.add_argument("sources", nargs="+", help="folders or files, in order")
    p.add_argument(
        "--tokenizer",
        default="byte",
        help="byte (default) or bpe:N (SentencePiece BPE)",
    )
    args = p.parse_args(argv)
    try:
        vocab = parse_tokenizer(args.tokenizer)
        meta = prepare([Path(s).resolve() for s in args.sources], Path(args.out), vocab)
    except InvalidConfig as e:
        print(f"prepare: {e}", file=sys.stderr)
        return 2
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
