"""Running and judging an IR: backends, verification (and later resources, energy, bundles)."""
