"""Pure tensor and table math: state-dict algebra, interpolation, task vectors and merges, selection rules."""
