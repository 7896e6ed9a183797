"""Serve Cobbler's ``svc`` WSGI app and its web directory over plain HTTP (lab only).

Runs as a script under the *Cobbler* virtualenv's Python (stdlib + cobbler only), standing in
for the Apache + mod_wsgi front end of a real Orchestra server:
``/cblr/svc/op/...`` goes to Cobbler's app, ``/cblr/...`` and ``/cobbler/...``
serve files from Cobbler's web directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import mimetypes
import os
import posixpath
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

# The WSGI callable's shape (wsgiref.types is Python 3.11+, and this must run on Cobbler's Python too).
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()


def _load_svc(path: str) -> WSGIApp:
    spec = importlib.util.spec_from_file_location("cobbler_svc_services", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cobbler_svc_server: cannot load Cobbler's svc app from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    application: WSGIApp = module.application
    return application


def make_app(svc_app: WSGIApp, webdir: str) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/cblr/svc/"):
            # mod_wsgi sets REQUEST_URI; Cobbler's app parses it.
            environ.setdefault("REQUEST_URI", path)
            return svc_app(environ, start_response)
        for prefix in ("/cblr/", "/cobbler/"):
            if path.startswith(prefix):
                rel = posixpath.normpath(path[len(prefix) :]).lstrip("/")
                full = os.path.join(webdir, rel)
                if not rel.startswith("..") and os.path.isfile(full):
                    ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
                    with open(full, "rb") as fh:
                        body = fh.read()
                    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
                    return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def main() -> None:
    # Run as a script, its own directory comes first on sys.path: drop it, so no sibling module can shadow
    # a module Cobbler imports (Cobbler itself comes from PYTHONPATH).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True, action="append", help="an address to listen on (repeatable)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--svc", required=True)
    parser.add_argument("--webdir", required=True)
    args = parser.parse_args()
    app = make_app(_load_svc(args.svc), args.webdir)
    servers = [
        make_server(host, args.port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        for host in args.host
    ]
    for server in servers[1:]:  # one thread per further address (a container lab's bridge besides loopback)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    for host in args.host:
        print(f"cobbler svc listening on http://{host}:{args.port}/cblr/svc/", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
