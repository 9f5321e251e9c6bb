"""Throughput benchmarks (``toylab bench NAME``): they print figures; timing through ``common.timed``."""
