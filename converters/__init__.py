"""Turning one representation of a network into another: checkpoint -> IR -> Lava process graph."""
