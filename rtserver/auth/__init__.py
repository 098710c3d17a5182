"""Authentication (JWT), identity, authorization rules and limits."""
