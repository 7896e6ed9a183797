"""Serve Cobbler's ``svc`` WSGI app and its web directory over plain HTTP (lab only).

Runs under the *Cobbler* virtualenv's Python (stdlib + cobbler only), standing in
for the Apache + mod_wsgi front end of a real Orchestra server:
``/cblr/svc/op/...`` goes to Cobbler's app, ``/cblr/...`` and ``/cobbler/...``
serve files from Cobbler's web directory.
"""

import argparse
import importlib.util
import mimetypes
import os
import posixpath
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()


def _load_svc(path):
    spec = importlib.util.spec_from_file_location("cobbler_svc_services", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.application


def make_app(svc_app, webdir):
    def app(environ, start_response):
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


def main():
    # This script's own directory holds modules named like Cobbler's; import Cobbler from PYTHONPATH.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--svc", required=True)
    parser.add_argument("--webdir", required=True)
    args = parser.parse_args()
    app = make_app(_load_svc(args.svc), args.webdir)
    server = make_server(args.host, args.port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    print(f"cobbler svc listening on http://{args.host}:{args.port}/cblr/svc/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
