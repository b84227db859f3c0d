"""``python -m qrad_agent`` runs the command line."""

import sys

from qrad_agent.cli import main

sys.exit(main())
