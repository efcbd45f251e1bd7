"""The Policy API: accounts and keys, policies, cap behaviour, usage reads, top-ups."""

from capstream.api.app import create_app

__all__ = ["create_app"]
