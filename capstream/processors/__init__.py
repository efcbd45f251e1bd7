"""capstream.processors."""
