"""`python -m napari_gfn` is the `napari-gfn` command line (also what torchrun starts)."""

import sys

from napari_gfn.cli import main

sys.exit(main())
