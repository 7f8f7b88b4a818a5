"""Network drivers (base.py is the interface): where VIP and member addresses come from
and how amphorae are plugged into their subnets."""
