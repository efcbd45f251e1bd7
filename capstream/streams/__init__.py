"""Kafka plumbing shared by every process: settings, topics, codecs, the local broker."""
