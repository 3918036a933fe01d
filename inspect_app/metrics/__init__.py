"""Evaluation on labelled data (MVTec layout) with anomalib's metric implementations."""
