"""Unknown names, said once: every registry (models, tasks, datasets, merges, prompt kinds, methods) refuses an
unknown name the same way, with the close matches and the choices."""
from __future__ import annotations

import difflib
from typing import Iterable


def unknown_name(kind: str, name: str, choices: Iterable[str], listed: Iterable[str] | None = None,
                 more: str = "") -> ValueError:
    """``Unknown <kind> 'x'. Did you mean: ...? Choose from: ...`` (``listed`` instead of every choice when
    there are thousands, e.g. timm's models; ``more`` says where the rest are)."""
    choices = list(choices)
    close = difflib.get_close_matches(str(name), choices, n=5, cutoff=0.5)
    if not close:  # "cifr10" is close to "CIFAR10" once case is set aside
        folded = {c.lower(): c for c in choices}
        close = [folded[c] for c in difflib.get_close_matches(str(name).lower(), list(folded), n=5, cutoff=0.5)]
    shown = list(listed) if listed is not None else choices
    return ValueError(f"Unknown {kind} {name!r}." + (f" Did you mean: {', '.join(close)}?" if close else "")
                      + (f" Choose from: {', '.join(shown)}" if shown else "") + more + ".")
