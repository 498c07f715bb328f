"""Contract tests: one test class per port, subclassed once per implementation."""
