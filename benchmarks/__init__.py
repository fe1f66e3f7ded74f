"""Speed and memory benchmarks that print side-by-side ratios. Run each from the repository root as a module,
``python -m benchmarks.NAME`` (e.g. ``python -m benchmarks.slider``): they import the installed ``paint_core`` and
each other (``benchmarks.common``, ``benchmarks.load``) as modules, with no ``sys.path`` edits."""
