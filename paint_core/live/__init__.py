"""Live sessions for the dashboard: shared prediction stores and per-session editable models."""
