"""`python -m edge_cam_export.demo`: build the bundled demo (build.py)."""
import sys

from .build import main

sys.exit(main())
