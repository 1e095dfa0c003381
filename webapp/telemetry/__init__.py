"""What operators read from the database: the figures /metrics exposes (totals kept as jobs end,
and the state now), the operator's overview (/admin, `flask queue`), and the schema's migration
(/readyz)."""
