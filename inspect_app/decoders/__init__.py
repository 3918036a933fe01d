"""Decoders turn encoder patch features into per-patch anomaly scores."""
