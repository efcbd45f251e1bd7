"""capstream.api."""
