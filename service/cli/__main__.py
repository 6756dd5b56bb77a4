"""`python -m service.cli`: the same as the `warren` console script."""

from service.cli import main

main()
