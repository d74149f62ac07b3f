"""Allow ``python3 -m gastown_units``."""

import sys

from gastown_units.launch import main

sys.exit(main())
