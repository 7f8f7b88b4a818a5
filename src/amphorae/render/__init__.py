"""Pure renderers: a load balancer model in, configuration text out (haproxy.cfg,
keepalived.conf, nftables rules). No I/O, no database, no clock."""
