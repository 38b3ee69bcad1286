"""``python -m lotan``: the ``lotan`` command (see :mod:`lotan.cli`)."""

import sys

from lotan.cli import main

sys.exit(main())
