"""``python -m framemark.cli``: the same command as ``framemark``."""

from framemark.cli import main

main()
