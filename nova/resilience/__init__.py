"""Resilience: retry policy, circuit breaker, the one retry driver and the one dead-letter path."""
