"""The ``ganlode`` command line: :mod:`.main` dispatches to one module per command."""
