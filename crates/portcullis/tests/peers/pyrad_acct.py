"""Drives Portcullis's accounting port with pyrad (an independent RADIUS client).

Usage: pyrad_acct.py HOST PORT SECRET DICTIONARY_DIR SCENARIO
Prints one line per request: "<name> ok" or "<name> timeout". pyrad verifies every
Response Authenticator (and Message-Authenticator when present) itself.
"""
import glob
import os
import sys

from pyrad import packet
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary

host, port, secret, dict_dir, scenario = sys.argv[1:6]
files = sorted(glob.glob(os.path.join(dict_dir, "dictionary.*")))
client = Client(server=host, acctport=int(port), secret=secret.encode(), dict=Dictionary(*files))
client.retries = 2
client.timeout = 2


def send(name, status, **attrs):
    req = client.CreateAcctPacket()
    req["Acct-Status-Type"] = status
    for key, value in attrs.items():
        req[key.replace("_", "-")] = value
    try:
        reply = client.SendPacket(req)
        ok = reply.code == packet.AccountingResponse
        print(f"{name} {'ok' if ok else 'bad-code'}", flush=True)
    except Timeout:
        print(f"{name} timeout", flush=True)


if scenario == "microsoft":
    common = dict(User_Name="CONTOSO\\Pat", NAS_IP_Address="10.1.1.1", Acct_Session_Id="ms-77",
                  Framed_IP_Address="10.8.1.9", Calling_Station_Id="198.51.100.44",
                  Tunnel_Client_Endpoint="198.51.100.44", MS_Machine_Name="PAT-LAPTOP",
                  MS_RAS_Client_Version="Windows 11")
    send("start", "Start", **common)
    send("interim", "Interim-Update", Acct_Session_Time=300, Acct_Input_Octets=1000, **common)
    send("stop", "Stop", Acct_Session_Time=600, Acct_Input_Octets=2000, Acct_Output_Octets=3000,
         Acct_Input_Gigawords=1, Acct_Terminate_Cause="User-Request", **common)
elif scenario == "nas-reboot":
    send("start-a", "Start", User_Name="quinn", NAS_Identifier="ovpn-1", Acct_Session_Id="q1",
         Calling_Station_Id="203.0.113.8")
    send("start-b", "Start", User_Name="rory", NAS_Identifier="ovpn-1", Acct_Session_Id="r1",
         Calling_Station_Id="203.0.113.9")
    send("accounting-on", "Accounting-On", NAS_Identifier="ovpn-1")
    send("start-c", "Start", User_Name="sam", NAS_Identifier="ovpn-1", Acct_Session_Id="s1")
    send("accounting-off", "Accounting-Off", NAS_Identifier="ovpn-1")
elif scenario == "tunnel":
    send("tunnel-link-start", "Tunnel-Link-Start", NAS_IP_Address="10.1.1.2", User_Name="tess")
else:
    sys.exit(f"unknown scenario {scenario}")
