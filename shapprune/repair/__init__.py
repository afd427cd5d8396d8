"""Repairing the cut after layers are removed: a training-free linear map per run, LoRA healing, a repaired game."""
