"""Training: the Lightning engine, gradient policies and epoch selection."""
