"""The HTTP API on the server's port: JSON in, JSON out, API key or admin JWT."""
