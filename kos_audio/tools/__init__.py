"""Command-line tools that ship with kos_audio (monitor, bag conversion)."""
