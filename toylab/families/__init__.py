"""Family records: each joins a family's config, task, model and loss for core/ to run.
Importing this package registers every family."""

from . import bilinear, grokking, groups, superposition  # noqa: F401
