"""``python -m haven``: the same command line as the ``haven`` script."""

from haven.relay.cli import main

raise SystemExit(main())
