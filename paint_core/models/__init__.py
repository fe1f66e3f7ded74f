"""Models: open_clip loading with the embedded configs and weights, closed-vocabulary encoders."""
