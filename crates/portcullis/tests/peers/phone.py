"""Stands in for a user's phone: receives push notifications and answers through the link.

Usage: phone.py PORT MODE_FILE LOG_FILE SECRETS_FILE
Two wire formats are received: a JSON webhook (the link in its "url" field) and ntfy's
plain-text publish (the body is the message, the link is the Click header; logged as
{"ntfy": true, "path", "title", "message", "url"}). Each notification is appended to
LOG_FILE as one JSON line. MODE_FILE holds "approve DELAY", "deny DELAY", "report DELAY"
(the "this wasn't me" button), "nocode DELAY" (approve without a code), "wrongcode DELAY",
"ignore" or "down" (answer with HTTP 503); it is read at every notification.
"approve DELAY PROMPT_FILE" also types the number found in PROMPT_FILE (the VPN prompt the
user reads) for number matching; "approve DELAY WRONG" types a wrong number.
Approving types the RFC 6238 code of the user the page names, from SECRETS_FILE (lines
"user BASE32SECRET"), a later step for each approval so that no code is used twice.
Every answer fetches the page first (as a person would), then submits its form.
"""
import base64
import hashlib
import hmac
import json
import re
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, mode_file, log_file, secrets_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
last_step = {}
lock = threading.Lock()
# A code is typed and submitted before the next one is made: a later step submitted
# first would burn the earlier one (the server refuses a step at or before the last
# one used), which no person with one phone can do.
submitting = threading.Lock()


def totp(user):
    secrets = dict(line.split() for line in open(secrets_file) if line.strip())
    key = base64.b32decode(secrets[user])
    with lock:
        step = max(int(time.time()) // 30, last_step.get(user, -1) + 1)
        last_step[user] = step
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 15
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1000000:06d}"


def answer(url, action, delay, extra):
    time.sleep(delay)
    page = urllib.request.urlopen(url, timeout=5).read().decode()
    if "Approve" not in page:
        return
    user = re.search(r"VPN sign-in for ([^<]+)</h1>", page).group(1)
    with submitting:
        submit(url, action, extra, user)


def submit(url, action, extra, user):
    form = {}
    if extra == "WRONG":
        form["number"] = "100"
    elif extra:
        form["number"] = "".join(c for c in open(extra).read() if c.isdigit())
    if action == "approve":
        form["code"] = totp(user)
    elif action == "wrongcode":
        form["code"] = "000000" if totp(user) != "000000" else "111111"
    path = {"nocode": "approve", "wrongcode": "approve"}.get(action, action)
    parts = urllib.parse.urlsplit(url)
    target = f"{parts.scheme}://{parts.netloc}{parts.path}/{path}?{parts.query}"
    request = urllib.request.Request(target, data=urllib.parse.urlencode(form).encode(), method="POST")
    request.add_header("content-type", "application/x-www-form-urlencoded")
    request.add_header("user-agent", "phone-stand-in/1")
    urllib.request.urlopen(request, timeout=5).read()


class Phone(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        click = self.headers.get("click")
        if click:
            record = {"ntfy": True, "path": self.path, "title": self.headers.get("title"),
                      "message": body.decode(), "url": click}
        else:
            record = json.loads(body)
        with open(log_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        mode = open(mode_file).read().split()
        if mode[0] == "down":
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
        if mode[0] != "ignore":
            extra = mode[2] if len(mode) > 2 else None
            threading.Thread(target=answer, args=(record["url"], mode[0], float(mode[1]), extra)).start()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Phone).serve_forever()
