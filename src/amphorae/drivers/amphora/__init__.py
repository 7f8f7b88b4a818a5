"""Amphora drivers (base.py is the interface): talk to the agents."""
