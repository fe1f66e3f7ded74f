"""The multi-task patching methods, declared like the merge methods (core/methods.py), torch-free.

The declarations live apart from their functions (studies/multitask.py) so that the CLI's ``--help`` lists the
methods without importing torch; each entry looks its function up in studies/multitask.py when it is called.
"""
from __future__ import annotations

from typing import Any, Callable

from ..core.methods import Method


def _in_multitask(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        from . import multitask
        return getattr(multitask, name)(*args, **kwargs)
    call.__name__ = name
    return call


MULTITASK_METHODS: dict[str, Method] = {m.name: m for m in (
    Method("joint", _in_multitask("_joint"),
           "one fine-tune on the union of the tasks (as many steps as all specialists)"),
    Method("sequential", _in_multitask("_sequential"),
           "patch task 1, fine-tune that model on task 2, interpolate, and so on"),
    Method("parallel", _in_multitask("_parallel"), "average the specialists' fine-tuned weights, then interpolate"),
)}
