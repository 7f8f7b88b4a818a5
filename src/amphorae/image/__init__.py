"""The amphora image's two ends of the config drive: what Nova writes
(config_drive.py) and what the image's first boot reads from it (first_boot.py)."""
