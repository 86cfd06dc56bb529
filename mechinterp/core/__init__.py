"""The core every method family imports: loading, sites, the shared cache, tokens, metrics."""
