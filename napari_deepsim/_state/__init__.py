"""The state the widgets share: the models offered, and a run's lifecycle (no Qt)."""
