"""Fixtures for the flow tests (helpers live in ``tests.flows.helpers``)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .helpers import Operator


@pytest.fixture
def operator() -> Operator:
    """A fresh operator signing key, trusted as issuer "central" by ``flows_extra``."""
    return Operator("central", Ed25519PrivateKey.generate())
