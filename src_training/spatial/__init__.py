"""Spatial transforms and the deformed grid.

Identity grids, warping, composition, integration, resizing, Jacobians, and the
polyline of a grid moved by a field.
"""
