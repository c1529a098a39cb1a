"""``python -m edge_convert``: rebuild models/ from the pinned sources."""

import sys

from .pipeline import main

sys.exit(main())
