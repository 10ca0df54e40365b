"""The Register widget and its panels."""
