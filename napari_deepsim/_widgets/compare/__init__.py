"""The Compare metrics widget and its panels."""
