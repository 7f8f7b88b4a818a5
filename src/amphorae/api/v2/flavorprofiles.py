"""Placeholder until this resource lands."""

ROUTES: list = []
