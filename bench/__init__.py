"""Benchmarks: Haven's relay against a bare trio-websocket forwarder, measured in one run."""
