"""API tokens: bearer authentication with scopes (router, schemas, service, dependencies)."""
