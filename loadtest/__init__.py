"""The Haven load generator: many rooms through the real protocol, exact loss accounting.

Modules: ``accounting`` (the pure loss ledger), ``body`` (what a load message carries),
``slo`` (objectives and verdicts), ``wire`` (a lean protocol client for the hot path),
``worker`` (one process's share of rooms), ``runner`` (workers, relay, modes),
``report`` (JSON, table, plot), ``cli`` (``haven loadtest``).
"""
