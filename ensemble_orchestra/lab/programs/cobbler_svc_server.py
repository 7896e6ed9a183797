"""Serve Cobbler's ``svc`` WSGI app and its web directory over plain HTTP (lab only).

Runs as a script under the *Cobbler* virtualenv's Python (stdlib + cobbler only), standing in
for the Apache + mod_wsgi front end of a real Orchestra server:
``/cblr/svc/op/...`` goes to Cobbler's app, ``/cblr/...`` and ``/cobbler/...``
serve files from Cobbler's web directory, and ``/cobbler_api`` is passed to cobblerd's XML-RPC
(which listens on loopback only), as Orchestra's Apache does: so machines on the lab's bridge reach it.
"""

from __future__ import annotations

import argparse
import importlib.util
import mimetypes
import os
import posixpath
import sys
import threading
import urllib.error
import urllib.request
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


def _proxy_xmlrpc(environ: dict[str, Any], start_response: StartResponse, port: int) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/RPC2", data=body, headers={"Content-Type": "text/xml"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            data, status, ctype = answer.read(), f"{answer.status} {answer.reason}", answer.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        data, status, ctype = error.read(), f"{error.code} {error.reason}", "text/plain"
    except OSError as error:  # cobblerd down: what Apache's mod_proxy answers then
        data, status, ctype = f"cobblerd unreachable: {error}\n".encode(), "502 Bad Gateway", "text/plain"
    start_response(status, [("Content-Type", ctype or "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


def make_app(svc_app: WSGIApp, webdir: str, xmlrpc_port: int | None = None) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if xmlrpc_port and path.rstrip("/") == "/cobbler_api" and environ.get("REQUEST_METHOD") == "POST":
            return _proxy_xmlrpc(environ, start_response, xmlrpc_port)
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
    parser.add_argument("--xmlrpc-port", type=int, default=None, help="cobblerd's XML-RPC port, for /cobbler_api")
    args = parser.parse_args()
    app = make_app(_load_svc(args.svc), args.webdir, args.xmlrpc_port)
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
