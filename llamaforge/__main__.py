import sys

from llamaforge.cli import main

sys.exit(main())
