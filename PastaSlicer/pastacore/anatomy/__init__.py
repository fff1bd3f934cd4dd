"""Anatomy without a model: classical body and lung masks; organs taken from any label map."""
