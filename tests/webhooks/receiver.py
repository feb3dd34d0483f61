#!/usr/bin/env python3
"""A webhook receiver for the integration tests: verifies every delivery with the PyPI
`standardwebhooks` library (the Standard Webhooks reference implementation), records it, and
answers as told. Run with the infra venv (infra/install.sh installs the library):

    infra/.venv/bin/python tests/webhooks/receiver.py

The first line on stdout is `LISTENING <control port> <hook port>` once both listen on
127.0.0.1; logs go to stderr. It exits when stdin closes (its test ended) or on SIGTERM.

Hooks: any POST to the hook port. The body is verified against each configured secret in turn
(`Webhook(secret).verify(body, headers)`, which also refuses timestamps more than 5 minutes
from now); a delivery no secret verifies is answered 400 and recorded as refused. A verified
one is answered with the next status of the `fail` list (and a `failBody`-byte body), or 200
once the list is empty.

Control (JSON over HTTP on the control port):
  GET  /requests   every hook request so far, oldest first: {n, path, id, type, headers,
                   body, verified, verifiedWith (indices of the secrets that verify it), error,
                   answered (status code, or "hangup"), receivedAt}
  POST /configure  any of {"secrets": [...], "fail": [500, 302], "failBody": 3000,
                   "failLocation": "http://...", "delayMs": 200, "mode": "up" | "down" |
                   "hangup"}; answers the configuration. A 3xx of `fail` carries `failLocation`
                   as its Location.
                   mode "down" closes the hook port (connections are refused) and "up" opens it
                   again on the same port; "hangup" reads each request and closes the connection
                   without answering.
  POST /reset      forgets the requests.
"""

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True

from standardwebhooks.webhooks import Webhook, WebhookVerificationError  # noqa: E402

log = logging.getLogger("receiver")

LOCK = threading.Lock()
STATE = {
    "secrets": [],
    "fail": [],
    "failBody": 0,
    "failLocation": None,
    "delayMs": 0,
    "mode": "up",
    "requests": [],
}
SETTINGS = ("secrets", "fail", "failBody", "failLocation", "delayMs", "mode")


def verify(body, headers):
    """Indices of the secrets that verify the delivery, and the first error otherwise."""
    with LOCK:
        secrets = list(STATE["secrets"])
    verified_with, error = [], None
    if not secrets:
        return verified_with, "no secret configured"
    for i, secret in enumerate(secrets):
        try:
            Webhook(secret).verify(body, headers)
            verified_with.append(i)
        except (WebhookVerificationError, ValueError) as e:
            error = error or f"{type(e).__name__}: {e}"
    return verified_with, (None if verified_with else error)


class HookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("hook: " + fmt, *args)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        body = raw.decode("utf-8", errors="replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified_with, error = verify(body, headers)
        try:
            event_type = json.loads(body).get("type")
        except (ValueError, AttributeError):
            event_type = None
        with LOCK:
            mode = STATE["mode"]
            delay = STATE["delayMs"]
            if mode == "hangup":
                answered = "hangup"
            elif not verified_with:
                answered = 400
            elif STATE["fail"]:
                answered = STATE["fail"].pop(0)
            else:
                answered = 200
            fail_body = STATE["failBody"]
            location = STATE["failLocation"]
            record = {
                "n": len(STATE["requests"]) + 1,
                "path": self.path,
                "id": headers.get("webhook-id"),
                "type": event_type,
                "headers": headers,
                "body": body,
                "verified": bool(verified_with),
                "verifiedWith": verified_with,
                "error": error,
                "answered": answered,
                "receivedAt": time.time(),
            }
            STATE["requests"].append(record)
        if delay:
            time.sleep(delay / 1000)
        if answered == "hangup":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if answered == 200:
            payload = b'{"received":true}'
        elif answered == 400:
            payload = json.dumps({"error": error}).encode()
        else:
            payload = (b"x" * fail_body) if fail_body else b"failing on purpose"
        self.send_response(answered)
        if location and 300 <= answered < 400:
            self.send_header("Location", location)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class HookServer:
    """The hook listener, which can be closed and opened again on the same port."""

    def __init__(self):
        self.server = None
        self.thread = None
        self.port = 0

    def up(self):
        if self.server is not None:
            return
        server = ThreadingHTTPServer(("127.0.0.1", self.port), HookHandler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def down(self):
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None


HOOKS = HookServer()


class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("control: " + fmt, *args)

    def answer(self, status, value):
        payload = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):  # noqa: N802
        if self.path == "/requests":
            with LOCK:
                requests = list(STATE["requests"])
            return self.answer(200, requests)
        return self.answer(404, {"error": "not found"})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        if self.path == "/reset":
            with LOCK:
                STATE["requests"] = []
            return self.answer(200, {"reset": True})
        if self.path != "/configure":
            return self.answer(404, {"error": "not found"})
        try:
            config = json.loads(raw or b"{}")
        except ValueError as e:
            return self.answer(400, {"error": str(e)})
        unknown = set(config) - set(SETTINGS)
        if unknown or config.get("mode", "up") not in ("up", "down", "hangup"):
            return self.answer(400, {"error": f"unknown settings {sorted(unknown)}"})
        with LOCK:
            for key in SETTINGS:
                if key in config:
                    STATE[key] = config[key]
            mode = STATE["mode"]
        if mode == "down":
            HOOKS.down()
        else:
            HOOKS.up()
        with LOCK:
            shown = {k: STATE[k] for k in SETTINGS if k != "secrets"}
            shown["secrets"] = len(STATE["secrets"])
        return self.answer(200, shown)


def exit_when_stdin_closes():
    """The test that started us holds our stdin; when it ends (even killed), we end."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret", action="append", default=[],
                        help="a whsec_ secret to verify with (repeatable; also settable later)")
    parser.add_argument("--keep-stdin", action="store_true",
                        help="do not exit when stdin closes (for running it by hand)")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("RECEIVER_LOG", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    STATE["secrets"] = args.secret
    HOOKS.up()
    control = ThreadingHTTPServer(("127.0.0.1", 0), ControlHandler)
    control.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if not args.keep_stdin:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(f"LISTENING {control.server_address[1]} {HOOKS.port}", flush=True)
    control.serve_forever()


if __name__ == "__main__":
    main()
