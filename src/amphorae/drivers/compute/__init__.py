"""Compute drivers (base.py is the interface): amphora instances."""
