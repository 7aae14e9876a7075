"""The scaling layer: distributed set-up, precision, sharding and checkpoints; the loop stays the same."""
