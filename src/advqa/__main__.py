"""``python -m advqa``: the command line. The guard matters: Dask and multiprocessing
workers start fresh interpreters that import the main module."""

from advqa.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
