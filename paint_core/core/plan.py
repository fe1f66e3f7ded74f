"""The interpolation coefficient, one type everywhere: a plan gives each block of the image tower its own alpha.

theta_b(plan) = (1 - plan[b]) * theta_zeroshot_b + plan[b] * theta_finetuned_b for every block b. A scalar alpha is
the uniform plan (one value everywhere): a per-block plan whose coefficients are all equal *is* that uniform plan
(same key, same rows, same weights bit for bit). Coefficients are rounded once, here, to ``DECIMALS``; keys and
labels are made here and nowhere else, so sweep.csv, the prediction store, export and the browser agree.

Torch-free: the CLI, the dashboard and the tables use it without loading torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

DECIMALS = 6  # coefficients are kept (and matched in sweep.csv) to this many decimals


class AlphaOutOfRange(ValueError):
    """A coefficient outside [0, 1] where extrapolation was not asked for. The message names no way to ask for it:
    only the caller knows whether it has one (the CLI's ``export --extrapolate``; ``sweep`` and the dashboard
    have none), and adds it."""


def check_alpha(alpha: float, allow_extrapolation: bool = False, what: str = "alpha") -> float:
    """alpha in [0, 1] (0 is zero-shot, 1 is fine-tuned); outside only if extrapolation is asked for."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"{what} must be a finite number, got {alpha}")
    if not allow_extrapolation and not 0.0 <= alpha <= 1.0:
        raise AlphaOutOfRange(f"{what} must be in [0, 1] (0 = zero-shot, 1 = fine-tuned), got {alpha:g}")
    return alpha


def format_coefficient(value: float) -> str:
    """The one way a coefficient is written: at most ``DECIMALS`` decimals, no trailing zeros (0.5, 0.125, 1)."""
    text = f"{round(float(value), DECIMALS):.{DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class Plan:
    """A coefficient per block. ``uniform`` is set (and ``blocks`` empty) when every block has the same one."""
    uniform: float | None
    blocks: tuple[tuple[str, float], ...] = ()

    @staticmethod
    def of(alpha: "float | Plan") -> "Plan":
        """The uniform plan at ``alpha`` (a plan is returned as it is)."""
        if isinstance(alpha, Plan):
            return alpha
        return Plan(round(check_alpha(alpha, allow_extrapolation=True), DECIMALS) + 0.0)

    @staticmethod
    def per_block(coefficients: Mapping[str, float]) -> "Plan":
        """A plan from {block: coefficient} in the tower's order; all equal collapses to the uniform plan."""
        if not coefficients:
            raise ValueError("a plan needs at least one block coefficient")
        values = {str(b): round(check_alpha(c, True, f"the coefficient of block {b!r}"), DECIMALS) + 0.0
                  for b, c in coefficients.items()}
        if len(set(values.values())) == 1:
            return Plan(next(iter(values.values())))
        return Plan(None, tuple(values.items()))

    @property
    def is_uniform(self) -> bool:
        return self.uniform is not None

    @property
    def alpha(self) -> float:
        """The scalar alpha of a uniform plan; a per-block plan has none."""
        if self.uniform is None:
            raise ValueError(f"the per-block plan {self.key} has no single alpha")
        return self.uniform

    def coefficient(self, block: str) -> float:
        if self.uniform is not None:
            return self.uniform
        for name, value in self.blocks:
            if name == block:
                return value
        raise KeyError(block)

    def mean(self) -> float:
        """The mean coefficient over the blocks the plan names (for a uniform plan: its alpha)."""
        return self.uniform if self.uniform is not None else sum(v for _, v in self.blocks) / len(self.blocks)

    @property
    def key(self) -> str:
        """Stable and readable: "0.5" for a uniform plan, "stem=0;layer1=0.25;..." for a per-block one."""
        if self.uniform is not None:
            return format_coefficient(self.uniform)
        return ";".join(f"{b}={format_coefficient(v)}" for b, v in self.blocks)

    def check(self, allow_extrapolation: bool = False) -> "Plan":
        for name, value in (self.blocks or (("alpha", self.uniform),)):
            check_alpha(value, allow_extrapolation, "alpha" if name == "alpha" else f"the coefficient of block {name!r}")
        return self

    def check_blocks(self, names: Iterable[str], varying: Iterable[str] = ()) -> "Plan":
        """Refuse blocks the model does not have, and missing coefficients for blocks whose weights differ
        between the endpoints (``varying``); blocks equal at both ends may be left out."""
        if self.uniform is not None:
            return self
        names = list(names)
        unknown = [b for b, _ in self.blocks if b not in names]
        if unknown:
            raise ValueError(f"the plan names {', '.join(map(repr, unknown))}, which this model does not have; "
                             f"its blocks are {', '.join(names)} (paint-core blocks --model NAME)")
        given = {b for b, _ in self.blocks}
        missing = [b for b in varying if b not in given]
        if missing:
            raise ValueError(f"the plan gives no coefficient for {', '.join(missing)}, whose weights differ between "
                             f"the endpoints; give every such block one")
        return self

    def to_json(self) -> dict:
        """{"alpha": a} for a uniform plan, {"blocks": {name: coefficient}} for a per-block one."""
        return {"alpha": self.uniform} if self.uniform is not None else {"blocks": dict(self.blocks)}

    @staticmethod
    def from_json(data: object, where: str = "the plan") -> "Plan":
        if not isinstance(data, dict) or ("blocks" in data) == ("alpha" in data):
            raise ValueError(f"{where} must be a JSON object with \"blocks\": {{name: coefficient}} or \"alpha\"")
        if "alpha" in data:
            if isinstance(data["alpha"], bool) or not isinstance(data["alpha"], (int, float)):
                raise ValueError(f"{where}: \"alpha\" must be a number, got {data['alpha']!r}")
            return Plan.of(data["alpha"])
        blocks = data["blocks"]
        if not isinstance(blocks, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in blocks.values()):
            raise ValueError(f"{where}: \"blocks\" must map block names to numbers")
        return Plan.per_block(blocks)

    @staticmethod
    def from_key(key: str) -> "Plan":
        """The plan a ``key`` names (the inverse of ``Plan.key``)."""
        key = str(key).strip()
        if "=" not in key:
            return Plan.of(float(key))
        return Plan.per_block({b: float(v) for b, v in (part.split("=", 1) for part in key.split(";"))})

    def label(self) -> str:
        """For people: "alpha 0.5" or "per block (mean 0.43)"."""
        return f"alpha {self.key}" if self.uniform is not None else f"per block (mean {self.mean():.2f})"


def read_plan(path: str | Path) -> Plan:
    """A plan.json (as ``paint-core search`` writes it, or by hand): {"blocks": {...}} or {"alpha": a}."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read the plan {path}: {e.strerror or e}") from None
    if len(text) > 1_000_000:
        raise ValueError(f"{path} is {len(text):,} characters; a plan is a few hundred")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    return Plan.from_json(data, str(path))


def early_blocks_frozen(names: Sequence[str], alpha: float, frozen: int | None = None) -> Plan:
    """The first ``frozen`` of the ordered blocks ``names`` (default: the first half, rounded down) kept at
    zero-shot and the rest at ``alpha``: asks whether the early, generic features need patching at all."""
    names = list(names)
    frozen = len(names) // 2 if frozen is None else frozen
    if not 0 <= frozen <= len(names):
        raise ValueError(f"cannot freeze {frozen} of {len(names)} blocks")
    return Plan.per_block({b: (0.0 if i < frozen else check_alpha(alpha)) for i, b in enumerate(names)})
