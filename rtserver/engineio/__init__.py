"""Engine.IO v4: packet codec, sessions and the HTTP/WebSocket endpoint."""
