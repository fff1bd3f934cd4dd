"""Measurements, pictures and report export."""
