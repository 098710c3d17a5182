"""HTTP/1.1 front end: one listening socket for REST routes and Engine.IO."""
