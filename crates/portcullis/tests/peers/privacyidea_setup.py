"""Configures a fresh privacyIDEA through its REST API for the tests: a flat-file user
resolver, realm "corp", a TOTP token for each user with the given key, and the
challenge-response policy (otppin=none).

Usage: privacyidea_setup.py BASE_URL ADMIN_PASSWORD USERS_FILE USER:HEXKEY...
"""
import json
import sys
import urllib.error
import urllib.request

base, admin_password, users_file = sys.argv[1], sys.argv[2], sys.argv[3]


def call(method, path, data=None, token=None):
    request = urllib.request.Request(base + path, data=json.dumps(data).encode() if data is not None else None,
                                     method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("Authorization", token)
    try:
        reply = json.loads(urllib.request.urlopen(request, timeout=20).read())
    except urllib.error.HTTPError as e:
        reply = json.loads(e.read())
    if not reply["result"]["status"]:
        sys.exit(f"{path}: {reply}")
    return reply


token = call("POST", "/auth", {"username": "admin", "password": admin_password})["result"]["value"]["token"]
call("POST", "/resolver/flat", {"type": "passwdresolver", "fileName": users_file}, token)
call("POST", "/realm/corp", {"resolvers": "flat"}, token)
for i, spec in enumerate(sys.argv[4:]):
    user, key = spec.split(":")
    call("POST", "/token/init", {"type": "totp", "otpkey": key, "user": user, "realm": "corp", "genkey": 0,
                                 "serial": f"TOTP{i}"}, token)
call("POST", "/policy/challenge", {"scope": "authentication", "action": "challenge_response=totp, otppin=none",
                                   "active": True}, token)
print("ok")
