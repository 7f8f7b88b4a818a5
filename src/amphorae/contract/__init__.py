"""What the amphora agent and the controller must agree on, and nothing else: the render
model (``model``), the documents and rule formats sent to the agent (``udp_config``,
``nftables``), where things live on an amphora (``layout``), the names both sides derive
(``peers``) and the health-check values both sides read (``expected_codes``).

An amphora image ships the agent with this package and ``amphorae.common`` only, so
nothing here may import any other package of ours (tests/unit/test_import_rules.py).
"""
