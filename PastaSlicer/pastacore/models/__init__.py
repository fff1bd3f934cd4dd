"""Model descriptions (manifest), the per-user model store and safe checkpoint loading."""
