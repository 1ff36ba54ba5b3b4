"""The two-host fixture (network namespaces; needs root, else the tests skip)."""

from kos_testing.netns import two_hosts

__all__ = ["two_hosts"]
