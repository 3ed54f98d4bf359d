"""Registered methods. Importing this package registers every method."""

from . import baselines, disentangled, mice, modaltune  # noqa: F401  (registration side effects)
