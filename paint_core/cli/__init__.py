"""Command line: ``python -m paint_core COMMAND ...``. argparse lives in this package and nowhere else.

Each command's parser sits beside the function it dispatches to, one module per group of commands (``train``,
``patch``, ``convert``, ``shipped``, ``relatives``, ``closed_vocab``, ``prompts``, ``search``); options several
commands share are in ``options``. ``build_parser`` only assembles them, in the order ``--help`` lists them.
Building the parser is torch-free on purpose: --help, COMMAND --help and usage errors answer without importing
torch; each command imports what it computes with when it runs.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from ..version import __version__
from . import closed_vocab, convert, patch, prompts, relatives, search, shipped, train

# Each command's parser, in the order --help lists them.
COMMANDS = (train.add_pretrain, train.add_finetune, patch.add_sweep, patch.add_select, patch.add_export,
            convert.add_convert, convert.add_import_run, patch.add_attack, shipped.add_reproduce,
            shipped.add_export_task, relatives.add_multitask, relatives.add_transfer, relatives.add_soup,
            relatives.add_wiseft, relatives.add_arithmetic, closed_vocab.add_pretrain_classifier,
            closed_vocab.add_closed_vocab, prompts.add_prompts, search.add_search, search.add_blocks,
            shipped.add_list)
DISTRIBUTED_COMMANDS = ("finetune", "sweep", "search")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paint-core", description="PAINT Explorer engine (also: python -m paint_core)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more and show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def _run_with_runtime(args: argparse.Namespace) -> int:
    """The command inside its runtime; under torchrun (WORLD_SIZE > 1) after joining the process group."""
    from ..engine import distributed
    from ..runtime import make_runtime, use_runtime

    if distributed.launched_by_torchrun() and args.command not in DISTRIBUTED_COMMANDS:
        raise ValueError(f"{args.command} runs in one process; under torchrun: {', '.join(DISTRIBUTED_COMMANDS)}")
    runtime = make_runtime(args.device, args.precision, args.workers, args.accum_steps, args.grad_checkpointing,
                           args.compile)
    joined = distributed.init_from_env(runtime.device)
    try:
        with use_runtime(runtime), contextlib.ExitStack() as quiet:
            if not distributed.is_main():  # one report per command, from rank 0
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
            return args.func(args)
    finally:
        if joined:
            distributed.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 when the command fails (one clear line; the traceback with -v), 2 for bad usage."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("paint_core").setLevel(logging.INFO)
    try:
        if not hasattr(args, "device"):
            return args.func(args)
        return _run_with_runtime(args)
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return 130
    except Exception as e:
        if args.verbose:
            raise
        kind = "" if isinstance(e, (ValueError, OSError, RuntimeError)) else f"{type(e).__name__}: "
        print(f"error: {kind}{e}", file=sys.stderr)
        return 1
