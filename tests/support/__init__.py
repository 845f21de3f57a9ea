"""Shared test harness: real servers on loopback, started and stopped per test."""
