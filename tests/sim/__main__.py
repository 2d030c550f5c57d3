"""``python -m tests.sim --seeds N [--start S] [--jobs J] [--trace] [--verbose]``"""

import sys

from .runner import main

sys.exit(main())
