"""Drives Portcullis's authentication port with pyrad (an independent RADIUS client).

Usage: pyrad_auth.py HOST PORT SECRET DICTIONARY_DIR SCENARIO [ARGS...]
Prints one JSON object per line describing what came back. MS-CHAPv2 client values are
computed with pycryptodome (MD4, DES) following RFC 2759, and the server's
MS-CHAP2-Success and MPPE keys are checked here, independently of the server's code.
"""
import glob
import hashlib
import json
import os
import sys

from Crypto.Cipher import DES
from Crypto.Hash import MD4
from pyrad import packet
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary

host, port, secret, dict_dir, scenario = sys.argv[1:6]
args = sys.argv[6:]
files = sorted(glob.glob(os.path.join(dict_dir, "dictionary.*")))
client = Client(server=host, authport=int(port), secret=secret.encode(), dict=Dictionary(*files))
client.retries = int(os.environ.get("PYRAD_RETRIES", "1"))
# Long enough for an Argon2 verification on a busy machine; a test that expects
# silence sets a shorter one.
client.timeout = float(os.environ.get("PYRAD_TIMEOUT", "6"))


def out(**kv):
    print(json.dumps(kv), flush=True)


def send(req):
    try:
        reply = client.SendPacket(req)
    except Timeout:
        return None
    return reply


def code_name(reply):
    if reply is None:
        return "timeout"
    return {packet.AccessAccept: "accept", packet.AccessReject: "reject", packet.AccessChallenge: "challenge"}.get(reply.code, str(reply.code))


def first_attr_is_ma(reply):
    raw = reply.raw_packet if hasattr(reply, "raw_packet") and reply.raw_packet else None
    return raw is not None and len(raw) > 20 and raw[20] == 80


def pap(user, password, ma=True, proxy_state=None, nas_ip=None):
    req = client.CreateAuthPacket(code=packet.AccessRequest, User_Name=user, message_authenticator=ma)
    req["User-Password"] = req.PwCrypt(password)
    req["NAS-Identifier"] = "pyrad-nas"
    if nas_ip:
        req["NAS-IP-Address"] = nas_ip
    if proxy_state:
        req["Proxy-State"] = proxy_state.encode()
    if ma:
        req.add_message_authenticator()
    return req


# --- MS-CHAPv2 client side (RFC 2759) -------------------------------------------------
def nt_hash(pw):
    return MD4.new(pw.encode("utf-16-le")).digest()


def des_key(k7):
    k = [k7[0], ((k7[0] << 7) | (k7[1] >> 1)) & 0xFF, ((k7[1] << 6) | (k7[2] >> 2)) & 0xFF,
         ((k7[2] << 5) | (k7[3] >> 3)) & 0xFF, ((k7[3] << 4) | (k7[4] >> 4)) & 0xFF,
         ((k7[4] << 3) | (k7[5] >> 5)) & 0xFF, ((k7[5] << 2) | (k7[6] >> 6)) & 0xFF, (k7[6] << 1) & 0xFF]
    return bytes(k)


def challenge_hash(peer, auth, user):
    user = user.split("\\")[-1]
    return hashlib.sha1(peer + auth + user.encode()).digest()[:8]


def nt_response(auth, peer, user, pw):
    ch = challenge_hash(peer, auth, user)
    z = nt_hash(pw) + b"\0" * 5
    return b"".join(DES.new(des_key(z[i:i + 7]), DES.MODE_ECB).encrypt(ch) for i in (0, 7, 14))


def auth_response(pw, ntr, peer, auth, user):
    hh = MD4.new(nt_hash(pw)).digest()
    d = hashlib.sha1(hh + ntr + b"Magic server to client signing constant").digest()
    d = hashlib.sha1(d + challenge_hash(peer, auth, user) + b"Pad to make it do more than one iteration").digest()
    return "S=" + d.hex().upper()


def mppe_keys(pw, ntr):
    hh = MD4.new(nt_hash(pw)).digest()
    master = hashlib.sha1(hh + ntr + b"This is the MPPE Master Key").digest()[:16]
    m2 = b"On the client side, this is the send key; on the server side, it is the receive key."
    m3 = b"On the client side, this is the receive key; on the server side, it is the send key."
    start = lambda magic: hashlib.sha1(master + b"\0" * 40 + magic + b"\xf2" * 40).digest()[:16]
    return start(m3), start(m2)  # server send, server receive


def mschapv2(user, password, server_password):
    auth = os.urandom(16)
    peer = os.urandom(16)
    ntr = nt_response(auth, peer, user, password)
    req = client.CreateAuthPacket(code=packet.AccessRequest, User_Name=user)
    req["NAS-Identifier"] = "pyrad-nas"
    req["MS-CHAP-Challenge"] = auth
    req["MS-CHAP2-Response"] = b"\x05\x00" + peer + b"\0" * 8 + ntr
    req.add_message_authenticator()
    reply = send(req)
    result = {"code": code_name(reply)}
    if reply is not None and reply.code == packet.AccessAccept:
        success = reply["MS-CHAP2-Success"][0]
        result["ident"] = success[0]
        result["success_verified"] = success[1:].decode() == auth_response(server_password, ntr, peer, auth, user)
        send_key, recv_key = mppe_keys(server_password, ntr)
        # pyrad salt-decrypts encrypt=2 attributes itself (its own RFC 2548 code).
        result["send_key_ok"] = reply["MS-MPPE-Send-Key"][0] == send_key
        result["recv_key_ok"] = reply["MS-MPPE-Recv-Key"][0] == recv_key
        result["ma_first"] = first_attr_is_ma(reply)
    elif reply is not None:
        err = reply.get("MS-CHAP-Error")
        value = err[0] if err else None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        result["error"] = value[1:] if value else None
    out(**result)


if scenario == "pap":
    user, password = args[0], args[1]
    reply = send(pap(user, password))
    r = {"code": code_name(reply)}
    if reply is not None:
        r["ma_first"] = first_attr_is_ma(reply)
        for name in ("Session-Timeout", "Class", "Filter-Id"):
            if name in reply:
                v = reply[name][0]
                r[name] = v.decode() if isinstance(v, bytes) else v
    out(**r)
elif scenario == "no-ma":
    out(code=code_name(send(pap(args[0], args[1], ma=False))))
elif scenario == "bad-ma":
    req = pap(args[0], args[1])
    raw = bytearray(req.RequestPacket())
    assert raw[20] == 80, "pyrad puts the Message-Authenticator first"
    raw[22] ^= 0xFF  # corrupt the Message-Authenticator value
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(float(os.environ.get("PYRAD_TIMEOUT", "1.5")))
    s.sendto(bytes(raw), (host, int(port)))
    try:
        s.recv(4096)
        out(code="answered")
    except socket.timeout:
        out(code="timeout")
elif scenario == "proxy-state":
    reply = send(pap(args[0], args[1], proxy_state="hop-1"))
    out(code=code_name(reply), proxy_state=[p.decode() for p in reply.get("Proxy-State", [])] if reply else [])
elif scenario == "proxy-state-no-ma":
    out(code=code_name(send(pap(args[0], args[1], ma=False, proxy_state="hop-1"))))
elif scenario == "retransmit":
    import socket
    req = pap(args[0], args[1])
    raw = req.RequestPacket()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    replies = []
    for _ in range(3):
        s.sendto(raw, (host, int(port)))
        replies.append(s.recv(4096))
    out(identical=len(set(replies)) == 1, count=len(replies), code=replies[0][0])
elif scenario == "mschapv2":
    mschapv2(args[0], args[1], args[2] if len(args) > 2 else args[1])
elif scenario == "storm":
    # One MS-CHAPv2 request retransmitted every 100 ms for SECONDS; every reply counted.
    import socket
    import time
    user, password, seconds = args[0], args[1], float(args[2])
    auth, peer = os.urandom(16), os.urandom(16)
    req = client.CreateAuthPacket(code=packet.AccessRequest, User_Name=user)
    req["NAS-Identifier"] = "pyrad-nas"
    req["MS-CHAP-Challenge"] = auth
    req["MS-CHAP2-Response"] = b"\x05\x00" + peer + b"\0" * 8 + nt_response(auth, peer, user, password)
    req.add_message_authenticator()
    raw = req.RequestPacket()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    replies, sent, end = [], 0, time.time() + seconds
    while time.time() < end:
        s.sendto(raw, (host, int(port)))
        sent += 1
        stop = time.time() + 0.1
        while time.time() < stop:
            try:
                replies.append(s.recv(4096))
            except BlockingIOError:
                time.sleep(0.01)
    out(sent=sent, replies=len(replies), identical=len(set(replies)) <= 1,
        code={2: "accept", 3: "reject", 11: "challenge"}.get(replies[0][0], "other") if replies else "timeout")
elif scenario == "eap-mschapv2":
    # EAP-MSCHAPv2 (RFC 2759 inside EAP) with an EAP identity and, separately, the Name
    # the MS-CHAPv2 Response carries and whose password computes it.
    import struct
    identity, name, password = args[0], args[1], args[2]

    def eap_request(eap, state=None):
        req = client.CreateAuthPacket(code=packet.AccessRequest, User_Name=identity)
        req["NAS-Identifier"] = "pyrad-nas"
        req["EAP-Message"] = eap
        if state is not None:
            req["State"] = state
        req.add_message_authenticator()
        return send(req)

    def eap_of(reply):
        return b"".join(reply["EAP-Message"]) if reply is not None and "EAP-Message" in reply else b""

    reply = eap_request(struct.pack("!BBH", 2, 0, 5 + len(identity)) + b"\x01" + identity.encode())
    result = {"first": code_name(reply)}
    eap = eap_of(reply)
    if reply is not None and reply.code == packet.AccessChallenge and len(eap) > 4 and eap[4] != 26:
        # Offered another method first (PEAP): Nak, asking for EAP-MSCHAPv2.
        reply = eap_request(struct.pack("!BBH", 2, eap[1], 6) + bytes([3, 26]), reply["State"][0])
        eap = eap_of(reply)
    if reply is None or reply.code != packet.AccessChallenge or len(eap) < 26 or eap[4] != 26:
        out(code=code_name(reply), **result)
        sys.exit(0)
    eap_id, ms_id, auth = eap[1], eap[6], eap[10:26]
    peer = os.urandom(16)
    bare = name.split("\\")[-1]
    value = peer + b"\0" * 8 + nt_response(auth, peer, bare, password) + b"\0"
    ms = bytes([2, ms_id]) + struct.pack("!H", 5 + len(value) + len(name)) + bytes([49]) + value + name.encode()
    reply = eap_request(struct.pack("!BBH", 2, eap_id, 5 + len(ms)) + b"\x1a" + ms, reply["State"][0])
    eap = eap_of(reply)
    if reply is not None and reply.code == packet.AccessChallenge and len(eap) > 5 and eap[4] == 26:
        op = eap[5]
        result["mschap_op"] = {3: "success", 4: "failure"}.get(op, op)
        reply = eap_request(struct.pack("!BBH", 2, eap[1], 6) + bytes([26, op]), reply["State"][0])
    out(code=code_name(reply), **result)
elif scenario in ("failover", "two-logins"):
    # failover: one MS-CHAPv2 request sent to this server, then the identical datagram
    # to the server at PORT_B 0.8 s later (a NAS retrying elsewhere). two-logins: two
    # separate requests of the same user from the same NAS and station, at once.
    import socket
    import threading
    user, password, port_b = args[0], args[1], int(args[2]) if scenario == "failover" else int(port)

    def raw_request():
        auth, peer = os.urandom(16), os.urandom(16)
        req = client.CreateAuthPacket(code=packet.AccessRequest, User_Name=user)
        req["NAS-Identifier"] = "pyrad-nas"
        req["Calling-Station-Id"] = "198.51.100.7"
        req["MS-CHAP-Challenge"] = auth
        req["MS-CHAP2-Response"] = b"\x05\x00" + peer + b"\0" * 8 + nt_response(auth, peer, user, password)
        req.add_message_authenticator()
        return req.RequestPacket()

    first = raw_request()
    second = first if scenario == "failover" else raw_request()
    codes = {}

    def exchange(key, raw, target, delay):
        import time
        time.sleep(delay)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(float(os.environ.get("PYRAD_TIMEOUT", "8")))
        s.sendto(raw, (host, target))
        try:
            codes[key] = {2: "accept", 3: "reject", 11: "challenge"}.get(s.recv(4096)[0], "other")
        except socket.timeout:
            codes[key] = "timeout"

    threads = [threading.Thread(target=exchange, args=("a", first, int(port), 0)),
               threading.Thread(target=exchange, args=("b", second, port_b, 0.8 if scenario == "failover" else 0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out(**codes)
elif scenario != "totp":
    sys.exit(f"unknown scenario {scenario}")


# --- TOTP by Access-Challenge (RFC 6238, computed here with hmac) ------------------------
def totp(secret_b32, digits, algorithm, t):
    import base64
    import hmac
    import struct
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(t) // 30), getattr(hashlib, algorithm.lower())).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def totp_round_trip(user, password, secret_b32, options):
    """PAP, then answer the Access-Challenge (optionally at another server)."""
    import time
    reply = send(pap(user, password, nas_ip=options.get("nas-ip")))
    result = {"first": code_name(reply)}
    if reply is not None and "Session-Timeout" in reply:
        result["Session-Timeout"] = reply["Session-Timeout"][0]
    if reply is None or reply.code != packet.AccessChallenge:
        out(**result)
        return
    result["prompt"] = reply["Reply-Message"][0] if "Reply-Message" in reply else None
    if os.environ.get("PROMPT_FILE"):
        # What the user reads on the VPN screen (number matching).
        with open(os.environ["PROMPT_FILE"], "w") as f:
            f.write(result["prompt"] or "")
    result["ma_first"] = first_attr_is_ma(reply)
    state = reply["State"][0]
    code = options.get("code") or totp(secret_b32, int(options.get("digits", 6)), options.get("algorithm", "sha1"),
                                       time.time() + float(options.get("offset", 0)))
    target = client
    if "answer-port" in options:
        target = Client(server=host, authport=int(options["answer-port"]), secret=secret.encode(), dict=client.dict)
        target.retries, target.timeout = 1, 1.5
    def answer_with(code):
        req = target.CreateAuthPacket(code=packet.AccessRequest, User_Name=options.get("answer-user", user))
        req["User-Password"] = req.PwCrypt(code)
        req["State"] = state
        req["NAS-Identifier"] = "pyrad-nas"
        req.add_message_authenticator()
        try:
            return target.SendPacket(req)
        except Timeout:
            return None

    answer = answer_with(code)
    result["answer"] = code_name(answer)
    if "answer-twice" in options:
        # The same State again, with a code that is fresh (the next step).
        later = totp(secret_b32, int(options.get("digits", 6)), options.get("algorithm", "sha1"), time.time() + 30)
        result["second_answer"] = code_name(answer_with(later))
    if answer is not None:
        result["ma_first"] = result["ma_first"] and first_attr_is_ma(answer)
        if "Reply-Message" in answer:
            result["reply_message"] = answer["Reply-Message"][0]
        if "Session-Timeout" in answer:
            result["Session-Timeout"] = answer["Session-Timeout"][0]
    out(**result)


if scenario == "totp":
    user, password, secret_b32 = args[0], args[1], args[2]
    options = dict(a.split("=", 1) for a in args[3:])
    totp_round_trip(user, password, secret_b32, options)
