"""Studies on run directories: patch, multi-task, transfer, WiSE-FT, arithmetic, closed vocabulary, prompts."""
