"""HTTP layer: routers by domain, schemas, dependencies and error mapping (no torch here)."""
