"""Stands in for a user's phone: receives push webhooks and answers through the link.

Usage: phone.py PORT MODE_FILE LOG_FILE
Each POST body is appended to LOG_FILE. MODE_FILE holds "approve DELAY", "deny DELAY",
"ignore" or "down" (answer the webhook with HTTP 503); it is read at every POST.
"approve DELAY PROMPT_FILE" types the number found in PROMPT_FILE (the VPN prompt the
user reads) for number matching; "approve DELAY WRONG" types a wrong number.
Approving or denying fetches the page first (as a person would), then submits the form.
"""
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, mode_file, log_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def answer(url, action, delay, number_source):
    time.sleep(delay)
    page = urllib.request.urlopen(url, timeout=5).read().decode()
    if "Approve" not in page:
        return
    form = b""
    if number_source == "WRONG":
        form = b"number=100"
    elif number_source:
        digits = "".join(c for c in open(number_source).read() if c.isdigit())
        form = f"number={digits}".encode()
    parts = urllib.parse.urlsplit(url)
    target = f"{parts.scheme}://{parts.netloc}{parts.path}/{action}?{parts.query}"
    request = urllib.request.Request(target, data=form, method="POST")
    request.add_header("content-type", "application/x-www-form-urlencoded")
    urllib.request.urlopen(request, timeout=5).read()


class Phone(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(log_file, "a") as f:
            f.write(body.decode() + "\n")
        mode = open(mode_file).read().split()
        if mode[0] == "down":
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
        if mode[0] in ("approve", "deny"):
            url = json.loads(body)["url"]
            source = mode[2] if len(mode) > 2 else None
            threading.Thread(target=answer, args=(url, mode[0], float(mode[1]), source)).start()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Phone).serve_forever()
