"""Runtime: devices and memory checks."""
