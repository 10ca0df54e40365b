"""Napari layers in and out of the widgets: which layers are inputs, and layers moved by a field."""
