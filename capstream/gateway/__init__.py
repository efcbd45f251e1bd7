"""capstream.gateway."""
