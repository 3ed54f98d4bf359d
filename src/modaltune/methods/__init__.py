"""Registered methods. Importing this package registers every method."""

from . import baselines, mice, modaltune  # noqa: F401  (registration side effects)
