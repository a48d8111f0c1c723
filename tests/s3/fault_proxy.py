#!/usr/bin/env python3
"""An HTTP proxy on loopback that injects the faults object storage shows.

Usage: fault_proxy.py LISTEN_PORT UPSTREAM_PORT [options]

Each client request is read whole, then, by the rules below, answered with
an injected fault or forwarded to the upstream server (one upstream
connection per request; responses carry `Connection: close`).

  --error-rate F     answer a fraction F of requests with --status (503)
  --status LIST      the injected status, or a comma list to pick from at
                     random (500,503,429: server errors and throttling)
  --drop-rate F      close the connection without answering (a dropped connection)
  --slow-rate F      delay a fraction F of responses by --slow-ms
  --slow-ms N
  --outage-after N   after N forwarded requests, refuse every request for
  --outage-secs S    S seconds (the server restarting), then forward again
  --always-fail      answer every request with --status
  --seed N           random seed (faults are reproducible)
  --log FILE         append one line per request: fault or status

Only the standard library is used.
"""

import argparse
import asyncio
import random
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("listen", type=int)
    p.add_argument("upstream", type=int)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--status", default="503")
    p.add_argument("--drop-rate", type=float, default=0.0)
    p.add_argument("--slow-rate", type=float, default=0.0)
    p.add_argument("--slow-ms", type=int, default=0)
    p.add_argument("--outage-after", type=int, default=-1)
    p.add_argument("--outage-secs", type=float, default=0.0)
    p.add_argument("--always-fail", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log")
    return p.parse_args()


ARGS = parse_args()
RNG = random.Random(ARGS.seed)
STATUSES = [int(s) for s in ARGS.status.split(",")]
REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
STATE = {"forwarded": 0, "outage_until": 0.0, "outage_done": False}


def log(line):
    if ARGS.log:
        with open(ARGS.log, "a") as f:
            f.write(line + "\n")


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    body = b""
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                break
    elif length:
        body = await reader.readexactly(length)
    return head, body


def rewrite_head(head):
    lines = head.split(b"\r\n")
    kept = [l for l in lines if not l.lower().startswith(b"connection:")]
    # kept ends with two empty entries from the final CRLFCRLF
    while kept and kept[-1] == b"":
        kept.pop()
    kept.append(b"Connection: close")
    return b"\r\n".join(kept) + b"\r\n\r\n"


async def answer(writer, status, reason):
    body = f"<Error><Code>Injected</Code><Message>{reason}</Message></Error>".encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )
    await writer.drain()


async def handle(reader, writer):
    try:
        head, body = await read_request(reader)
    except Exception:
        writer.close()
        return
    request_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    now = time.monotonic()
    try:
        if now < STATE["outage_until"]:
            log(f"outage {request_line}")
            writer.close()
            return
        if ARGS.always_fail or RNG.random() < ARGS.error_rate:
            status = RNG.choice(STATUSES)
            log(f"{status} {request_line}")
            await answer(writer, status, REASONS.get(status, "Injected fault"))
            return
        if RNG.random() < ARGS.drop_rate:
            log(f"drop {request_line}")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", ARGS.upstream)
        up_writer.write(rewrite_head(head) + body)
        await up_writer.drain()
        response = await up_reader.read()
        up_writer.close()
        if RNG.random() < ARGS.slow_rate:
            await asyncio.sleep(ARGS.slow_ms / 1000)
        writer.write(response)
        await writer.drain()
        status = response.split(b" ", 2)[1].decode(errors="replace") if response else "?"
        log(f"{status} {request_line}")
        STATE["forwarded"] += 1
        if (ARGS.outage_after >= 0 and not STATE["outage_done"]
                and STATE["forwarded"] >= ARGS.outage_after):
            STATE["outage_done"] = True
            STATE["outage_until"] = time.monotonic() + ARGS.outage_secs
            log(f"outage starts for {ARGS.outage_secs}s")
    except Exception as e:  # the client went away: nothing to do
        log(f"error {e!r} {request_line}")
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", ARGS.listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
