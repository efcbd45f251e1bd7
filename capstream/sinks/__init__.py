"""ClickHouse sink: exactly-once writes, migrations, rollups and read-only SQL (README.md)."""
