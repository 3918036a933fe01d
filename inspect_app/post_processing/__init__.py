"""Turning raw anomaly maps into calibrated verdicts and region facts."""
