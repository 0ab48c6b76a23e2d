"""Pipeline middleware, one module per concern."""
