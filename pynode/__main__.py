import sys

from pynode.main import main

sys.exit(main())
