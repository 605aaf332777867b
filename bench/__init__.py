"""The benchmark: `make bench`, or `python -m bench.run --help`. Never imported by the service."""
