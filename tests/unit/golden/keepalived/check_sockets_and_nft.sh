#!/bin/sh
# VRRP health check for keepalived (generated): exit 0 only if every data path answers.

printf 'show info\n' | socat -T 2 -t 2 - UNIX-CONNECT:/var/lib/amphorae/amphora/lb1/haproxy.sock 2>/dev/null | grep -q '^Pid:' || exit 1
printf 'show info\n' | socat -T 2 -t 2 - UNIX-CONNECT:/var/lib/amphorae/amphora/lb2/haproxy.sock 2>/dev/null | grep -q '^Pid:' || exit 1
nft list table inet amphorae >/dev/null 2>&1 || exit 1
exit 0
