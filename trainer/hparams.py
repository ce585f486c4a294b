"""The one declaration of the trainer's hyperparameters.

Everything else derives from this table: the trainer's config validation, the search
space the loop uses (`python3 -m trainer.hparams --export-json > trainer/search-space.json`),
and the table in docs/trainer.md. Names follow Karpathy's autoresearch `train.py`.

`ADAM_BETAS` is a tuple in Karpathy's script; the search space (int/float/choice only)
exposes it as `ADAM_BETA1` and `ADAM_BETA2`, and the trainer accepts either form.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

Value = Union[int, float, str]

# The largest SEQ_LEN: evaluation segments have this length, so the bytes that val_bpb
# is measured on do not depend on SEQ_LEN (see trainer/data.py).
MAX_SEQ_LEN = 2048


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int" | "float" | "choice"
    cpu: Value
    gpu: Value
    description: str
    min: Optional[float] = None
    max: Optional[float] = None
    log: bool = False
    choices: Tuple[Value, ...] = field(default_factory=tuple)
    # The choices a CUDA search uses when they differ (a value outside them still runs).
    gpu_choices: Tuple[Value, ...] = field(default_factory=tuple)

    def to_json(self) -> Dict[str, object]:
        out: Dict[str, object] = {"name": self.name, "kind": self.kind}
        if self.kind == "choice":
            out["choices"] = list(self.choices)
            if self.gpu_choices:
                out["gpuChoices"] = list(self.gpu_choices)
        else:
            out["min"] = self.min
            out["max"] = self.max
            if self.log:
                out["log"] = True
        out["default"] = self.cpu
        out["gpuDefault"] = self.gpu
        out["description"] = self.description
        return out


# CPU defaults: a 2-layer d128 byte-level GPT that trains ~25k+ tokens/s on one core.
# GPU defaults: Karpathy's reference (docs/design.md, Defaults and Karpathy's reference)
# with the batch halved for a 60 s budget (more optimizer steps in a short run) and full
# attention. A CUDA search does not offer S layers at all: with PyTorch SDPA a sliding
# window needs an explicit mask, which rules out the flash kernel and does the full t^2
# work, so S is slower than L there (docs/trainer.md).
PARAMS: Tuple[Param, ...] = (
    Param("DEPTH", "int", 2, 8, "transformer layers", 1, 24),
    Param(
        "ASPECT_RATIO",
        "int",
        64,
        64,
        "d_model = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM",
        8,
        256,
    ),
    Param(
        "HEAD_DIM", "choice", 64, 128, "attention head dimension", choices=(32, 64, 128)
    ),
    Param(
        "WINDOW_PATTERN",
        "choice",
        "L",
        "L",
        "per-layer attention window: S = half context, L = full; the last layer is always L (CUDA searches: L only)",
        choices=("L", "SL", "SSL", "SSSL"),
        gpu_choices=("L",),
    ),
    Param(
        "SEQ_LEN",
        "int",
        128,
        2048,
        "context length in tokens",
        32,
        MAX_SEQ_LEN,
        log=True,
    ),
    Param(
        "TOTAL_BATCH_SIZE",
        "int",
        4096,
        2**18,
        "tokens per optimizer step; gradient accumulation = round(TOTAL_BATCH_SIZE / (DEVICE_BATCH_SIZE * SEQ_LEN)), at least 1",
        512,
        2**21,
        log=True,
    ),
    Param(
        "DEVICE_BATCH_SIZE",
        "int",
        32,
        128,
        "sequences per forward pass",
        1,
        512,
        log=True,
    ),
    Param(
        "EMBEDDING_LR",
        "float",
        0.6,
        0.6,
        "AdamW LR for the token embedding (scaled by (d_model/768)^-0.5)",
        0.01,
        3.0,
        log=True,
    ),
    Param(
        "UNEMBEDDING_LR",
        "float",
        0.004,
        0.004,
        "AdamW LR for the untied output head (scaled by (d_model/768)^-0.5)",
        0.0001,
        0.3,
        log=True,
    ),
    Param(
        "MATRIX_LR",
        "float",
        0.04,
        0.04,
        "Muon LR for the block matrices",
        0.001,
        1.0,
        log=True,
    ),
    Param(
        "SCALAR_LR",
        "float",
        0.5,
        0.5,
        "AdamW LR for the per-layer residual scalars",
        0.01,
        3.0,
        log=True,
    ),
    Param(
        "WEIGHT_DECAY",
        "float",
        0.2,
        0.2,
        "decoupled weight decay on the block matrices, decayed linearly to 0 over training",
        0.0,
        0.5,
    ),
    Param("ADAM_BETA1", "float", 0.8, 0.8, "first element of ADAM_BETAS", 0.5, 0.99),
    Param(
        "ADAM_BETA2", "float", 0.95, 0.95, "second element of ADAM_BETAS", 0.8, 0.999
    ),
    Param(
        "WARMUP_RATIO",
        "float",
        0.0,
        0.0,
        "fraction of the budget spent ramping the LR up from 0",
        0.0,
        0.5,
    ),
    Param(
        "WARMDOWN_RATIO",
        "float",
        0.5,
        0.5,
        "fraction of the budget (at the end) spent decaying the LR",
        0.0,
        1.0,
    ),
    Param(
        "FINAL_LR_FRAC",
        "float",
        0.0,
        0.0,
        "LR at the end, as a fraction of the peak",
        0.0,
        1.0,
    ),
)

BY_NAME: Dict[str, Param] = {p.name: p for p in PARAMS}

# Run-level settings: they define the measurement, not the model, so they are not searched.
RUN_LEVEL = {
    "SEED": "seed of the model init and the batch sampler (default 0)",
    "MAX_STEPS": "train exactly this many steps instead of until the time budget is spent",
    "EVAL_BYTES": "validation bytes val_bpb is measured on (CPU 131072, GPU 524288); a multiple of 2048",
}
# The GPU size is half the default corpus's validation split (1,048,576 bytes; a check needs
# EVAL_BYTES + 1): a larger default would refuse every default CUDA trial.
EVAL_BYTES = {"cpu": 2**17, "cuda": 2**19}


class InvalidConfig(ValueError):
    """A config the trainer refuses before anything runs (exit code 2)."""


def defaults(device: str) -> Dict[str, Value]:
    return {p.name: (p.gpu if device == "cuda" else p.cpu) for p in PARAMS}


def _check(p: Param, value: object) -> Value:
    if p.kind == "choice":
        for choice in p.choices:
            if type(choice) is type(value) and choice == value:
                return choice
            # JSON has one number type: 64.0 is the choice 64.
            if isinstance(choice, int) and isinstance(value, float) and value == choice:
                return choice
        raise InvalidConfig(f"{p.name} must be one of {list(p.choices)}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidConfig(f"{p.name} must be a number ({p.kind}), got {value!r}")
    if not math.isfinite(value):
        raise InvalidConfig(f"{p.name} must be finite, got {value!r}")
    if p.kind == "int":
        if value != int(value):
            raise InvalidConfig(f"{p.name} must be an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    assert p.min is not None and p.max is not None
    if value < p.min or value > p.max:
        raise InvalidConfig(
            f"{p.name} must be in [{p.min:g}, {p.max:g}], got {value!r}"
        )
    return value


def resolve(overrides: Dict[str, object], device: str) -> Dict[str, Value]:
    """Device defaults with `overrides` applied, validated; raises InvalidConfig."""
    config = defaults(device)
    errors: List[str] = []
    for key, raw in overrides.items():
        if key == "ADAM_BETAS":
            if not isinstance(raw, (list, tuple)) or len(raw) != 2:
                errors.append(f"ADAM_BETAS must be a pair (beta1, beta2), got {raw!r}")
                continue
            pairs: Sequence[Tuple[str, object]] = (
                ("ADAM_BETA1", raw[0]),
                ("ADAM_BETA2", raw[1]),
            )
        elif key in BY_NAME:
            pairs = ((key, raw),)
        else:
            hint = " (SEED and MAX_STEPS are run options)" if key in RUN_LEVEL else ""
            errors.append(f"unknown hyperparameter {key!r}{hint}")
            continue
        for name, value in pairs:
            try:
                config[name] = _check(BY_NAME[name], value)
            except InvalidConfig as e:
                errors.append(str(e))
    if errors:
        raise InvalidConfig("; ".join(errors))
    return config


def export() -> Dict[str, object]:
    return {
        "version": 1,
        "note": "Generated from trainer/hparams.py (the one declaration) by "
        "`python3 -m trainer.hparams --export-json`; do not edit by hand.",
        "params": [p.to_json() for p in PARAMS],
        "evalBytes": dict(EVAL_BYTES),
    }


def export_json() -> str:
    text = json.dumps(export(), indent=2)
    # Arrays of scalars on one line, as biome formats them (the file is checked by biome).
    text = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]",
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )
    return text + "\n"


def _num(x: Optional[float]) -> str:
    assert x is not None
    return str(int(x)) if float(x).is_integer() and abs(x) >= 1 else f"{x:g}"


def markdown_table() -> str:
    rows = [
        "| name | type | range | CPU default | GPU default | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for p in PARAMS:
        if p.kind == "choice":
            rng = ", ".join(json.dumps(c) for c in p.choices)
        else:
            rng = f"{_num(p.min)} … {_num(p.max)}" + (" (log)" if p.log else "")
        rows.append(
            f"| `{p.name}` | {p.kind} | {rng} | {json.dumps(p.cpu)} | {json.dumps(p.gpu)} | {p.description} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="the trainer's hyperparameter declaration"
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--export-json", action="store_true", help="print search-space.json"
    )
    group.add_argument("--markdown", action="store_true", help="print the docs table")
    args = parser.parse_args(argv)
    sys.stdout.write(export_json() if args.export_json else markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
