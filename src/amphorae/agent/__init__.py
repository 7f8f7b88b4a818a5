"""The amphora agent: the REST API the controller drives an amphora through (reference
§4), the supervision of the HAProxy and keepalived processes it runs, nftables and the
health checks of UDP members, and the heartbeat sender. It imports only
``amphorae.contract`` (what it shares with the controller) and ``amphorae.common``, so an
amphora needs none of the controller's code (tests/unit/test_import_rules.py)."""
