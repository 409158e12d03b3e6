"""``python -m eqprop``: the same as the ``eqprop`` command."""

import sys

from eqprop.cli import main

sys.exit(main())
