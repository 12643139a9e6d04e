import sys

from lilm.cli import main

sys.exit(main())
