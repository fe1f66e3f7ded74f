"""Widgets more than one page draws: one per parameter of a merge method, generated from its declaration
(paint_core/core/methods.py) so a newly registered method gets its controls on every page with no edit here, and
an image uploader whose bad files become a message."""
from __future__ import annotations

import streamlit as st
from PIL import Image

from paint_core.core.methods import Method, Param
from paint_core.data.images import ImageInputError, read_image


def param_key(prefix: str, method: Method, param: Param) -> str:
    """The widget key of ``param``: unique per method, since two methods may share a parameter name."""
    return f"{prefix}_{method.name}_{param.name}"


def method_widgets(method: Method, prefix: str) -> dict[str, float]:
    """One widget per declared parameter, at its default: a slider when both ends are bounded floats,
    otherwise a number input. Returns {parameter: value} for the method's function."""
    values: dict[str, float] = {}
    for p in method.params:
        lo, hi = p.widget_bounds()
        label, key = f"{p.name}: {p.help}", param_key(prefix, method, p)
        if p.type is float and lo is not None and hi is not None:
            values[p.name] = st.slider(label, float(lo), float(hi), float(p.default), step=float(p.step), key=key,
                                       help=f"in {p.range_text()}")
        elif p.type is int:
            values[p.name] = int(st.number_input(label, None if lo is None else int(lo),
                                                 None if hi is None else int(hi), int(p.default),
                                                 step=max(1, int(p.step)), key=key, help=f"in {p.range_text()}"))
        else:
            values[p.name] = float(st.number_input(label, lo, hi, float(p.default), step=float(p.step), key=key,
                                                   help=f"in {p.range_text()}"))
    return values


def uploaded_image(key: str) -> Image.Image | None:
    """A file uploader whose bad files become a message on the page, never an exception."""
    up = st.file_uploader("PNG, JPEG or WebP", type=["png", "jpg", "jpeg", "webp"], key=key)
    if up is None:
        return None
    try:
        return read_image(up.getvalue(), up.name)
    except ImageInputError as e:
        st.error(str(e))
        return None
