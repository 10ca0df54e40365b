"""The Big stack widget: stacks larger than memory into an OME-Zarr store."""
