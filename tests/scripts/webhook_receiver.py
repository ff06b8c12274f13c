#!/usr/bin/env python3
"""A webhook receiver written independently of Keyplane, with Python's standard library only:
it checks each delivery by the Standard Webhooks convention (HMAC-SHA256 over
"{webhook-id}.{webhook-timestamp}.{body}" with the base64-decoded `whsec_` secret; any of the
space-separated `v1,` signatures may match) and prints one JSON line per delivery on stdout.

Environment: WEBHOOK_SECRETS, the accepted `whsec_...` secrets separated by spaces;
WEBHOOK_TOLERANCE, the largest accepted distance in seconds between `webhook-timestamp` and now
("none": not checked, for tests whose clock is not the real one).
Prints `listening PORT` first; answers 204 to a verified delivery and 400 to any other.
Used by control-plane/tests/api/webhooks_delivery.rs; the README's receiver example is the same check.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def verify(secrets, headers, body):
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not stamp:
        return False, "missing webhook-id or webhook-timestamp"
    tolerance = os.environ.get("WEBHOOK_TOLERANCE", "300")
    if tolerance != "none" and abs(time.time() - int(stamp)) > int(tolerance):
        return False, "timestamp outside the tolerance"
    signed = f"{msg_id}.{stamp}.".encode() + body
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for candidate in signatures.split(" "):
            version, _, value = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return True, "ok"
    return False, "no signature matches"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        secrets = os.environ.get("WEBHOOK_SECRETS", "").split()
        ok, why = verify(secrets, self.headers, body)
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        print(json.dumps({
            "verified": ok,
            "why": why,
            "id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "signatures": len(self.headers.get("webhook-signature", "").split()),
            "content_type": self.headers.get("content-type"),
            "event": event,
        }), flush=True)
        self.send_response(204 if ok else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_port}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
