"""Scale-out across relay processes on core NATS (docs/operations.md, "Cluster").

``cluster.wire`` is the NATS client protocol, sans-IO, and ``cluster.nats`` the Trio
client around it; ``cluster.seal`` keeps the bus opaque (HMAC subjects, AEAD payloads
under the cluster key). ``cluster.link`` is a relay process's link to the others, made
of ``cluster.forwarding`` (requests this process sends away), ``cluster.proxies``
(connections of other processes served here) and ``cluster.escalations``; what they
share is in ``cluster.base``.
"""
