import sys

from perlhf.cli import main

sys.exit(main())
