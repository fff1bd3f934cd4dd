"""The per-user model store (import, verify, remove) and the manifest of known models."""
