import sys

from tfdeploy.cli import main

sys.exit(main())
