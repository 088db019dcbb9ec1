"""Click commands, one module per feature; each is a thin wrapper over the Python API."""
