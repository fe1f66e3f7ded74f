"""The engine: evaluation (one forward pass), the one training loop, fine-tuning, pretraining, probes, prompts."""
