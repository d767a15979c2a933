"""``python -m bench``: see :mod:`bench._cli`."""

import sys

from bench._cli import main

sys.exit(main())
