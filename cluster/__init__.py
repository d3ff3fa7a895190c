"""Scale-out across relay processes on core NATS (issue 13, being built).

``cluster.wire`` is the NATS client protocol, sans-IO; ``cluster.nats`` the Trio client
around it; ``cluster.seal`` keeps the bus opaque (HMAC subjects, AEAD payloads under the
cluster key).
"""
