"""Several nodes as one server through Redis (``[cluster]``): the wire format
of the reference adapter (:mod:`.wire`), the Redis link (:mod:`.link`) and
the bus the Socket.IO server and the hub use (:mod:`.bus`)."""
