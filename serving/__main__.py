"""`python -m serving --model-name N --model-base-path P ...` (see docs/serving.md)."""
import sys

from serving.server import main

sys.exit(main())
