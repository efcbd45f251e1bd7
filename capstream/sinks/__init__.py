"""capstream.sinks."""
