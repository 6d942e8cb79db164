"""modaltune.data."""
