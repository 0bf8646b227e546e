"""The run directory: the project's artifact, read and written here only (see :mod:`medner.run.directory`)."""
