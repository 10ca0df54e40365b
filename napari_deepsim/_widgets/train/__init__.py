"""The two training widgets and what they share."""
