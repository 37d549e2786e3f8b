"""Trained adapters by name: the registry, merging and export."""
