#!/bin/sh
# VRRP health check for keepalived (generated): exit 0 only if every data path answers.

# No listener on this amphora: do not claim the VIP.
exit 1
