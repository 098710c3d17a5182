"""Socket.IO v5: packet codec, sockets, namespaces and the per-connection client."""
