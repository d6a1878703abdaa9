import sys

from pascal_forge.cli import main

sys.exit(main())
