"""Figures for Prometheus that the database holds: totals kept as jobs end, and the state now."""
