"""modaltune.interpret."""
