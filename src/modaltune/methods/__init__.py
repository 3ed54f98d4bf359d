"""Registered methods. Importing this package registers every method."""

from . import baselines, modaltune  # noqa: F401  (registration side effects)
