"""`python -m app.cli`: the `lgm-pose` console script."""

import sys

from app.cli import main

sys.exit(main())
