"""Pure renderers: a load balancer model (contract.model) in, configuration text out
(haproxy.cfg, keepalived.conf). No I/O, no database, no clock. The nftables rules of UDP
listeners are rendered by contract.nftables: the agent re-renders them itself."""
