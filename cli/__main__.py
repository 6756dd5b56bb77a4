"""`python -m cli`: the same as the `warren` console script."""

from cli import main

main()
