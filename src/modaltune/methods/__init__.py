"""modaltune.methods."""
