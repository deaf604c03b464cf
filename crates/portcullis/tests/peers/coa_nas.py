"""A NAS's RFC 5176 Dynamic Authorization port, built on pyrad, for the disconnect tests.

Usage: coa_nas.py PORT SECRET DICTIONARY_DIR MODE RECORD_FILE
MODE: ack (Disconnect-ACK), nak (Disconnect-NAK with Error-Cause 503, Session Context
Not Found), silent (never answers). Every request received is appended to RECORD_FILE
as one JSON line: its attributes, whether its Request Authenticator and its
Message-Authenticator verified with SECRET, checked here by pyrad, not by Portcullis.
Prints "ready" once listening on 127.0.0.1.
"""
import glob
import json
import os
import socket
import struct
import sys

from pyrad import packet
from pyrad.dictionary import Dictionary

port, secret, dict_dir, mode, record = sys.argv[1:6]
secret = secret.encode()
files = sorted(glob.glob(os.path.join(dict_dir, "dictionary.*")))
dictionary = Dictionary(*files)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", int(port)))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(4096)
    req = packet.CoAPacket(packet=data, secret=secret, dict=dictionary)
    attrs = {}
    for key in req.keys():
        name = key if isinstance(key, str) else str(key)
        values = req[key]
        attrs[name] = [v.hex() if isinstance(v, bytes) else str(v) for v in values]
    entry = {
        "code": req.code,
        "id": req.id,
        "authenticator_ok": req.VerifyCoARequest(),
        "message_authenticator_ok": req.verify_message_authenticator(),
        "attributes": attrs,
    }
    with open(record, "a") as f:
        f.write(json.dumps(entry) + "\n")
    if mode == "silent" or req.code != packet.DisconnectRequest:
        continue
    reply = req.CreateReply()
    if mode == "ack":
        reply.code = packet.DisconnectACK
    else:
        reply.code = packet.DisconnectNAK
        reply.AddAttribute("Error-Cause", 503)
    sock.sendto(reply.ReplyPacket(), peer)
