import sys

from mcuformer.cli.main import main

sys.exit(main())
