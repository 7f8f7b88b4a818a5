"""Housekeeping: the periodic sweeps that keep the system tidy and nothing stuck."""
