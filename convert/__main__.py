"""``python -m convert``: rebuild models/ from the pinned sources."""

import sys

from convert.pipeline import main

sys.exit(main())
