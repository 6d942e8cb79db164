"""modaltune.data.sources."""
