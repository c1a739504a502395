//! The client port's transport: the HTTP/2 authority shim, malformed protobuf, connection floods.
