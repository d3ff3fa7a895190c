"""Haven relay: the Trio shell around the pure protocol and synchronous room logic."""

__version__ = "0.1.0"
