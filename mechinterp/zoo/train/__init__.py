"""Deterministic training scripts for the zoo models (one module per model)."""
