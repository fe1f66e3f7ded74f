"""Options several commands share (runtime, study output, a config dataclass's fields) and the small readers of
parsed arguments every command uses."""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import MISSING, fields
from typing import Any

from ..configs import MAX_ALPHAS, PRECISIONS, field_docs

MAX_EVAL_HELP = "evaluate on the first N images of each split (default: all)"
ALPHAS_HELP = f"start:stop:step or a comma list, at most {MAX_ALPHAS:,} alphas (default: %(default)s)"


def command_line() -> str:
    """The command as typed, for the files a command writes (they record what made them)."""
    return "python -m paint_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def csv_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def config_from(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """A config dataclass from the options ``add_config_options`` added for it (other fields: ``fixed`` or defaults)."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in fixed and hasattr(args, f.name)}
    return cls(**given, **fixed)


def study_out(out: str) -> str:
    """A study's --out: not inside the shipped results, and not over a file that is not an earlier result."""
    from ..io.writes import check_json_output, refuse_shipped
    refuse_shipped(out, "--out")
    check_json_output(out)
    return out


def add_config_options(parser: argparse.ArgumentParser, cls: type, only: tuple[str, ...] | None = None) -> None:
    """One ``--field`` option per field of the config dataclass ``cls``: its default from the dataclass, its help
    from the field's ``#:`` comment (``configs.field_docs``; a field without one gets no help, and a test fails)."""
    docs = field_docs(cls)
    for f in fields(cls):
        if only is not None and f.name not in only:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        text = docs.get(f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=default, help=text)
        else:
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{text} (default: %(default)s)" if text else None)


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """--device, --precision and --workers: where the command computes (``paint_core.runtime``)."""
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32, amp (float16 autocast + gradient scaler) or amp_bf16 (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes decoding images (default: %(default)s, decode in the main process)")
    parser.add_argument("--accum-steps", type=int, default=1,
                        help="micro-batches per step whose gradients accumulate: the same update in less memory "
                             "(default: %(default)s)")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="recompute activations in the backward pass (ViT towers): less memory, slower")
    parser.add_argument("--compile", action="store_true",
                        help="fine-tune through torch.compile: a minute or more of compiling first, then faster "
                             "steps on a GPU")


def add_study_output(parser: argparse.ArgumentParser) -> None:
    """--out and --max-eval, as every study on run directories takes them."""
    parser.add_argument("--out", required=True, help="results JSON file to write (an earlier one with equal inputs "
                                                     "is resumed)")
    parser.add_argument("--max-eval", type=int, default=None, help=MAX_EVAL_HELP)
