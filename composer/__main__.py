"""`python -m composer ...`: see composer/cli.py."""

import sys

from composer.cli import main

if __name__ == "__main__":
    sys.exit(main())
