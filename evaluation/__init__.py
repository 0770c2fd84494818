"""Evaluation models, DSA augmentation, training loops and the fixed protocols."""
