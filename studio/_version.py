"""The version, written once: the build reads it (pyproject's `tool.setuptools.dynamic`), and
`studio.__version__`, `studio --version` and the dashboard show it."""

__version__ = "0.1.0"

#: The name to `pip install` (the import package and the command are `studio`; that name on the
#: package index belongs to another project).
DISTRIBUTION = "studio-experiments"
