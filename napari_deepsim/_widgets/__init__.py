"""The docked widgets, and the controls, workers and layout they share."""
