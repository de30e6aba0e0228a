"""The ``metalbus`` command line."""
