"""Beffroi's domain core: device families, reading types, payload decoders, the registry."""
