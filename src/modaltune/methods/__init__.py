"""Registered methods. Importing this package registers every method."""
