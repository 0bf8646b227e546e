import sys

from medner.cli import main

sys.exit(main())
