"""``python -m edge_convert``: rebuild models/ from the pinned sources."""

import sys

from .conversion import main

sys.exit(main())
