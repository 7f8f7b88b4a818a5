"""The health manager: heartbeats in, statuses and failovers out."""
