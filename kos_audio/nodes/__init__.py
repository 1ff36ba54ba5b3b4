"""The executables: one node per module, each with a ``main()``."""
