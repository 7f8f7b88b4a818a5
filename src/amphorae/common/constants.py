"""Names and values of Octavia's v2 API: statuses, protocols, algorithms and limits."""

# provisioning_status
ACTIVE = "ACTIVE"
PENDING_CREATE = "PENDING_CREATE"
PENDING_UPDATE = "PENDING_UPDATE"
PENDING_DELETE = "PENDING_DELETE"
DELETED = "DELETED"
ERROR = "ERROR"
ALLOCATED = "ALLOCATED"
BOOTING = "BOOTING"
READY = "READY"
FAILOVER_STOPPED = "FAILOVER_STOPPED"
PENDING_STATUSES = (PENDING_CREATE, PENDING_UPDATE, PENDING_DELETE)

# operating_status
ONLINE = "ONLINE"
OFFLINE = "OFFLINE"
DEGRADED = "DEGRADED"
DRAINING = "DRAINING"
NO_MONITOR = "NO_MONITOR"

# protocols
HTTP = "HTTP"
HTTPS = "HTTPS"
TCP = "TCP"
UDP = "UDP"
SCTP = "SCTP"
TERMINATED_HTTPS = "TERMINATED_HTTPS"
PROMETHEUS = "PROMETHEUS"
PROXY = "PROXY"
PROXYV2 = "PROXYV2"
LISTENER_PROTOCOLS = (HTTP, HTTPS, TCP, TERMINATED_HTTPS, UDP, SCTP, PROMETHEUS)
POOL_PROTOCOLS = (HTTP, HTTPS, TCP, PROXY, PROXYV2, UDP, SCTP)

# Which pool protocols a listener of each protocol may send traffic to.
VALID_LISTENER_POOL_PROTOCOLS = {
    TCP: (HTTP, HTTPS, PROXY, PROXYV2, TCP),
    HTTP: (HTTP, PROXY, PROXYV2),
    HTTPS: (HTTPS, PROXY, PROXYV2, TCP),
    TERMINATED_HTTPS: (HTTP, PROXY, PROXYV2),
    UDP: (UDP,),
    SCTP: (SCTP,),
    PROMETHEUS: (),
}
# The layer-4 protocol a listener port is taken on (TCP:80 and UDP:80 may coexist).
L4_PROTOCOL = {
    TCP: TCP, HTTP: TCP, HTTPS: TCP, TERMINATED_HTTPS: TCP, PROXY: TCP, PROXYV2: TCP,
    PROMETHEUS: TCP, UDP: UDP, SCTP: SCTP,
}
LVS_PROTOCOLS = (UDP, SCTP)

LB_ALGORITHMS = ("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT")

HM_TYPES = ("HTTP", "HTTPS", "PING", "TCP", "TLS-HELLO", "UDP-CONNECT", "SCTP")
HM_HTTP_TYPES = ("HTTP", "HTTPS")
HM_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")
HM_TYPES_FOR_POOL = {
    **{p: ("HTTP", "HTTPS", "PING", "TCP", "TLS-HELLO")
       for p in (HTTP, HTTPS, PROXY, PROXYV2, TCP)},
    UDP: ("UDP-CONNECT", "SCTP", "TCP", "HTTP"),
    SCTP: ("UDP-CONNECT", "SCTP", "TCP", "HTTP"),
}

SESSION_PERSISTENCE_TYPES = ("SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE")

L7POLICY_ACTIONS = ("REJECT", "REDIRECT_TO_URL", "REDIRECT_TO_POOL", "REDIRECT_PREFIX")
L7POLICY_REDIRECT_CODES = (301, 302, 303, 307, 308)
L7RULE_TYPES = (
    "HOST_NAME", "PATH", "FILE_TYPE", "HEADER", "COOKIE",
    "SSL_CONN_HAS_CERT", "SSL_VERIFY_RESULT", "SSL_DN_FIELD",
)
L7RULE_COMPARE_TYPES = ("REGEX", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "EQUAL_TO")
MAX_RULES_PER_L7POLICY = 50

CLIENT_AUTH_MODES = ("NONE", "OPTIONAL", "MANDATORY")
TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
ALPN_PROTOCOLS = ("h2", "http/1.1", "http/1.0")

INSERT_HEADERS_HTTP = (
    "X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto",
    "X-Forwarded-IP", "X-Client-IP", "X-Real-IP",
)
INSERT_HEADERS_TLS = (
    "X-SSL-Client-Verify", "X-SSL-Client-Has-Cert", "X-SSL-Client-DN", "X-SSL-Client-CN",
    "X-SSL-Issuer", "X-SSL-Client-SHA1", "X-SSL-Client-Not-Before", "X-SSL-Client-Not-After",
)

TOPOLOGY_SINGLE = "SINGLE"
TOPOLOGY_ACTIVE_STANDBY = "ACTIVE_STANDBY"
# N amphorae behind a distributor, all serving (issue 12; a specification in Octavia).
TOPOLOGY_ACTIVE_ACTIVE = "ACTIVE_ACTIVE"
TOPOLOGIES = (TOPOLOGY_SINGLE, TOPOLOGY_ACTIVE_STANDBY, TOPOLOGY_ACTIVE_ACTIVE)
ROLE_ACTIVE = "ACTIVE"  # Octavia's role for an amphora of an ACTIVE_ACTIVE set
# Bounds of an ACTIVE_ACTIVE load balancer's amphora count (flavor amphora_count_min/max).
AMPHORA_COUNT_LIMIT = 16
AMPHORA_COUNT_MIN_DEFAULT = 2
AMPHORA_COUNT_MAX_DEFAULT = 4
ROLE_MASTER = "MASTER"
ROLE_BACKUP = "BACKUP"
ROLE_STANDALONE = "STANDALONE"

# Amphora statuses (Octavia's lib constants).
AMPHORA_BOOTING = "BOOTING"
AMPHORA_ALLOCATED = "ALLOCATED"
# Amphorae that serve their load balancer; FAILOVER_STOPPED ones too (the health
# manager's circuit breaker only stopped their failover).
AMPHORA_SERVING = (AMPHORA_ALLOCATED, FAILOVER_STOPPED)
VNIC_NORMAL = "normal"
VNIC_DIRECT = "direct"

# Numeric limits.
MIN_PORT, MAX_PORT = 1, 65535
MIN_WEIGHT, MAX_WEIGHT = 0, 256
MIN_HM_RETRIES, MAX_HM_RETRIES = 1, 10
MIN_TIMEOUT, MAX_TIMEOUT = 0, 24 * 24 * 60 * 60 * 1000
MIN_POSITION, MAX_POSITION = 1, 2147483647
MIN_QUOTA, MAX_QUOTA = -1, 2000000000
MIN_CONNECTION_LIMIT = -1

NIL_UUID = "00000000-0000-0000-0000-000000000000"

# Job actions carried out by the worker.
JOB_RECONCILE = "reconcile"
JOB_FAILOVER_LB = "failover_loadbalancer"
JOB_FAILOVER_AMPHORA = "failover_amphora"
JOB_AMPHORA_CONFIG = "update_amphora_config"
JOB_DELETE_AMPHORA = "delete_amphora"

PROVIDER_AMPHORA = "amphora"
PROVIDER_OCTAVIA = "octavia"

# The agent's answer to a configuration GET carries, besides the ETag (MD5 of the
# installed file), the MD5 of the config the running process loaded; the two differ
# between an upload and its reload. Absent when the process is down.
RUNNING_ETAG_HEADER = "X-Running-ETag"

# The amphora's interface on the VIP subnet (the agent, keepalived and the drivers agree).
AMPHORA_VIP_INTERFACE = "eth1"
