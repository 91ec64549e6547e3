"""`python -m exporter`: the same command line as `shopper-exporter`."""

from exporter.cli import main

main()
