"""``python -m mechinterp`` runs the command line."""

import sys

from mechinterp.cli import main

sys.exit(main())
