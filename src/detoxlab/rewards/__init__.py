"""Reward models for guided decoding: the RAD teacher and the ARM student (METHODS.md section 2)."""
