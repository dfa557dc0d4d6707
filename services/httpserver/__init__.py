"""A small HTTP/1.1 server on asyncio (uvloop) with a C parser (httptools), for the query service.

Why our own: on granian, reading a request body costs two hand-offs between its
threads and the event loop (with the GIL) per request — a bare app answering a
constant served 21.4k OFREP requests/s at `wrk -c16` when it read the body and
34.7k when it did not (bench/README.md). Here a request whose handler answers at
once is parsed and answered inside the one `data_received` call that completed
it: no task, no thread, no await. The same bare answer served 80–97k requests/s.

- `Connection`: one client connection, HTTP/1.1 keep-alive and pipelining, limits and timeouts;
- `Request`, `Reply`, `Streamed`: what a handler reads and answers (`Streamed`: a body written as it comes);
- `ASGIBridge`, `Lifespan`: any other request goes to an ASGI app, whose lifespan the worker runs;
- `BalancedAcceptor` (`accept`): the workers share the socket, each holding about as many connections as the others;
- `serve`: the listening socket, worker processes, graceful shutdown.
"""

from services.httpserver.asgi import ASGIBridge, Lifespan
from services.httpserver.connection import Connection, Limits
from services.httpserver.message import Reply, Request, Streamed
from services.httpserver.workers import serve

__all__ = ["ASGIBridge", "Connection", "Lifespan", "Limits", "Reply", "Request", "Streamed", "serve"]
