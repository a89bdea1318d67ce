#!/usr/bin/python3
"""A real SMTP server for the tests (aiosmtpd, Debian's python3-aiosmtpd): accepts every
message and writes each to DIR/<n>.eml, and a line to DIR/connections for every EHLO (one per
connection a client opens). Started by the test harness on a free loopback port."""
import argparse, itertools, os, signal

from aiosmtpd.controller import Controller

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--dir", required=True)
args = p.parse_args()
os.makedirs(args.dir, exist_ok=True)
counter = itertools.count(1)


class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with open(os.path.join(args.dir, "connections"), "a") as f:
            f.write(hostname + "\n")
        return responses

    async def handle_DATA(self, server, session, envelope):
        n = next(counter)
        tmp = os.path.join(args.dir, f".{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(args.dir, f"{os.getpid()}-{n}.eml"))
        return "250 OK"


controller = Controller(Handler(), hostname="127.0.0.1", port=args.port)
controller.start()
print("ready", flush=True)
# SIGTERM (the harness stopping us) ends the process with its default action.
signal.pause()
