"""Evaluation on labelled data (MVTec layout): scikit-learn's AUROC and anomalib's public AUPRO."""
