"""`python -m hipush_client`: the `hipush` command."""
import sys

from .cli import main

sys.exit(main())
