"""The widgets' long work, free of Qt and napari: arrays in, arrays out, over the engine."""
