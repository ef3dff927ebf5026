#!/usr/bin/env python3
"""A real HTTP(S) server for the remote_term HTTP fetcher's tests.

Binds 127.0.0.1 on port 0, prints "PORT <n>" and serves until killed.

  /files/NAME        NAME from --root. ETag (the content's SHA-256, quoted)
                     and Last-Modified (its mtime); If-None-Match and
                     If-Modified-Since answered with 304. Query options:
                       validators=both|etag|lm|none  (default both)
                       cc=VALUE    a Cache-Control header; age=N an Age header
                       encoding=gzip  the content gzip-compressed, with
                                      Content-Encoding: gzip
  /status/CODE       that status, with a short body
  /s3error           403 with an S3-style XML error body
  /redirect/N?to=P   N relative redirects (302), then one to P
  /redirect-abs?to=P a 301 to the absolute URL of P
  /redirect-to?url=U a 302 to U
  /redirect-loop     a 302 to itself
  /hang              reads the request and never answers
  /big/N             N bytes, with Content-Length
  /chunked/N         N bytes, chunked, no Content-Length
  /stall             a 200 that promises 100 bytes, sends 10 and stalls
  /encoding/NAME     a 200 with Content-Encoding: NAME
  /_requests         what was asked so far: one JSON object per request
                     (path and the conditional headers), as a JSON list
"""
import argparse
import email.utils
import gzip
import hashlib
import json
import os
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

requests_seen = []
requests_lock = threading.Lock()
# /hang and /stall hold their connection until the client closes it, or this long.
HOLD_SECONDS = 60


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root = "."

    def log_message(self, *args):  # quiet: stdout carries the port
        pass

    def send(self, code, body=b"", headers=()):
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        if path != "/_requests":
            with requests_lock:
                requests_seen.append({
                    "path": self.path,
                    "if_none_match": self.headers.get("If-None-Match"),
                    "if_modified_since": self.headers.get("If-Modified-Since"),
                    "accept_encoding": self.headers.get("Accept-Encoding"),
                    "authorization": self.headers.get("Authorization"),
                })
        if path == "/_requests":
            with requests_lock:
                body = json.dumps(requests_seen).encode()
            return self.send(200, body, [("Content-Type", "application/json")])
        if path.startswith("/files/"):
            return self.file(path[len("/files/"):], query)
        if path.startswith("/status/"):
            code = int(path[len("/status/"):])
            return self.send(code, b"status %d\n" % code)
        if path == "/s3error":
            body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                    b'<Message>Access Denied</Message></Error>')
            return self.send(403, body, [("Content-Type", "application/xml")])
        if path.startswith("/redirect/"):
            n = int(path[len("/redirect/"):])
            to = query.get("to", "/files/a.json")
            where = ("%d?%s" % (n - 1, urllib.parse.urlencode({"to": to}))) if n > 0 else to
            return self.send(302, b"", [("Location", where)])
        if path == "/redirect-abs":
            host, port = self.server.server_address[:2]
            scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
            return self.send(301, b"", [("Location", "%s://%s:%d%s" % (scheme, host, port, query["to"]))])
        if path == "/redirect-to":
            return self.send(302, b"", [("Location", query["url"])])
        if path == "/redirect-loop":
            return self.send(302, b"", [("Location", "/redirect-loop")])
        if path == "/hang":
            self.hold()
            return
        if path.startswith("/big/"):
            n = int(path[len("/big/"):])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"x" * 65536
            left = n
            try:
                while left > 0:
                    part = chunk[:min(left, len(chunk))]
                    self.wfile.write(part)
                    left -= len(part)
            except OSError:
                pass  # the client stopped reading: what the oversize test expects
            return
        if path.startswith("/chunked/"):
            n = int(path[len("/chunked/"):])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                left = n
                while left > 0:
                    size = min(left, 32768)
                    self.wfile.write(b"%x\r\n" % size + b"y" * size + b"\r\n")
                    left -= size
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            return
        if path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.hold()
            return
        if path.startswith("/encoding/"):
            return self.send(200, b"{}", [("Content-Encoding", path[len("/encoding/"):])])
        return self.send(404, b"no such path\n")

    def hold(self):
        """Answers nothing more until the client closes the connection
        (at most HOLD_SECONDS)."""
        self.connection.settimeout(HOLD_SECONDS)
        try:
            self.connection.recv(1)
        except OSError:
            pass
        self.close_connection = True

    def file(self, name, query):
        full = os.path.join(self.root, os.path.basename(name))
        try:
            with open(full, "rb") as f:
                content = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except OSError:
            return self.send(404, b"no such file\n")
        validators = query.get("validators", "both")
        etag = '"%s"' % hashlib.sha256(content).hexdigest()[:32]
        last_modified = email.utils.formatdate(int(mtime), usegmt=True)
        headers = []
        if validators in ("both", "etag"):
            headers.append(("ETag", etag))
        if validators in ("both", "lm"):
            headers.append(("Last-Modified", last_modified))
        if "cc" in query:
            headers.append(("Cache-Control", query["cc"]))
        if "age" in query:
            headers.append(("Age", query["age"]))
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        if validators in ("both", "etag") and inm is not None:
            if etag in [t.strip() for t in inm.split(",")]:
                return self.send(304, b"", headers)
        elif validators in ("both", "lm") and ims is not None:
            since = email.utils.parsedate_to_datetime(ims).timestamp()
            if int(mtime) <= since:
                return self.send(304, b"", headers)
        if query.get("encoding") == "gzip":
            content = gzip.compress(content)
            headers.append(("Content-Encoding", "gzip"))
        return self.send(200, content, headers)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=".")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    Handler.root = args.root
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
