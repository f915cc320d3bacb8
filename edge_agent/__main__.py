"""``python -m edge_agent``: the ``edge-agent`` command line (see :mod:`edge_agent.cli`)."""

import sys

from edge_agent.cli import main

sys.exit(main())
