"""The engine: the public functions every front end calls.

The CLI, the napari widgets' jobs, the demo, scripts and benchmarks are thin adapters
over these functions; they take arrays or datasets and options, return result objects
and yield progress events, and never print, parse arguments or touch Qt.
"""
