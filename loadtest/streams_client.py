#!/usr/bin/env python3
"""Keeps N OpenAI streams open at once against one HTTP/1.1 port and measures them.

Each of N keep-alive connections sends a streamed chat completion (POST /v1/chat/completions,
"stream": true), reads its Server-Sent Events as they arrive and, when the chunked body ends,
sends the next request on the same connection (a closed loop: N streams open at all times).
For each stream it takes the time from the request's last byte written to the first byte of
its first `data:` event (time to first token as the client sees it). One epoll loop, raw
non-blocking sockets: at the tens of thousands of events per second a loadtest asks for, an
asyncio loop would be the bottleneck.

The connections are opened, each with its first request, evenly spread over --warmup seconds
(one stream's length is right: from then on the streams start and end evenly spread in time,
not in a burst);
what is measured (events, streams completed, time to first token) is what happens in the
--seconds after the warm-up. At the warm-up's end it writes "open" to --open-file, and at the
window's end "end", then waits (up to 10 s) for that file to say "sampled" before it closes
its connections: a harness samples a proxy's memory and CPU time at the window's edges, and
the proxy's work on the closing connections stays out of the window.

Prints one JSON object: streams completed, events received, time to first token percentiles
(ms), errors and the window's length.

Usage: streams_client.py PORT --streams N --warmup W --seconds S [--model M] [--open-file F]
Load for loadtest/streams only: 127.0.0.1, bounded in count (N) and time (S).
"""
import argparse
import errno
import json
import select
import socket
import sys
import time


def request_bytes(model: str) -> bytes:
    body = json.dumps({"model": model, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


class Stream:
    __slots__ = ("sock", "sent_at", "first_at", "buf", "events", "head_done")

    def __init__(self, sock):
        self.sock = sock
        self.reset()

    def reset(self):
        self.sent_at = 0.0
        self.first_at = 0.0
        self.buf = b""
        self.events = 0
        self.head_done = False


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--warmup", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--model", default="chat")
    ap.add_argument("--open-file", default="")
    args = ap.parse_args()
    request = request_bytes(args.model)
    ep = select.epoll()
    streams = {}
    errors = 0
    ttfts = []
    events = 0
    completed = 0

    def send(s):
        s.reset()
        s.sock.sendall(request)  # small: fits the socket buffer at once
        s.sent_at = time.monotonic()

    # each connection opened at an evenly spread time and its first request sent at once (a
    # connection left without a request would meet the proxy's first-request timeout)
    def open_stream():
        nonlocal errors
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect(("127.0.0.1", args.port))
        except OSError:
            errors += 1
            sock.close()
            return False
        sock.setblocking(False)
        s = Stream(sock)
        streams[sock.fileno()] = s
        ep.register(sock.fileno(), select.EPOLLIN)
        send(s)
        return True

    connected = 0
    t0 = time.monotonic()
    first_requests = [t0 + args.warmup * i / max(1, args.streams) for i in range(args.streams)]
    next_first = 0
    start = t0 + args.warmup
    end = start + args.seconds
    measuring = False
    while True:
        now = time.monotonic()
        if now >= end:
            break
        while next_first < len(first_requests) and first_requests[next_first] <= now:
            connected += open_stream()
            next_first += 1
        if not measuring and now >= start:
            measuring = True
            if args.open_file:
                with open(args.open_file, "w") as f:
                    f.write("open\n")
        wake = end if next_first >= len(first_requests) else first_requests[next_first]
        if not measuring:
            wake = min(wake, start)
        for fd, _ in ep.poll(max(0.0, min(0.2, wake - now))):
            s = streams.get(fd)
            if s is None:
                continue
            try:
                data = s.sock.recv(65536)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
                data = b""
            if not data:
                errors += 1
                ep.unregister(fd)
                s.sock.close()
                del streams[fd]
                continue
            s.buf += data
            if not s.head_done:
                cut = s.buf.find(b"\r\n\r\n")
                if cut < 0:
                    continue
                if not s.buf.startswith(b"HTTP/1.1 200"):
                    errors += 1
                    ep.unregister(fd)
                    s.sock.close()
                    del streams[fd]
                    continue
                s.head_done = True
                s.buf = s.buf[cut + 4:]
            n = s.buf.count(b"data: ")
            in_window = measuring and s.sent_at >= start
            if n and not s.first_at:
                s.first_at = time.monotonic()
                if in_window:
                    ttfts.append((s.first_at - s.sent_at) * 1000)
            if measuring:
                events += n
            if s.buf.endswith(b"0\r\n\r\n"):  # the chunked body's last chunk: the stream ended
                if measuring:
                    completed += 1
                send(s)
                continue
            # keep only a tail too short to hold a whole "data: " (counted already) that may
            # hold the start of one, or of the end marker, split across reads
            s.buf = s.buf[-5:]
    elapsed = time.monotonic() - start
    if args.open_file:
        with open(args.open_file, "w") as f:
            f.write("end\n")
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            with open(args.open_file) as f:
                if f.read().strip() == "sampled":
                    break
            time.sleep(0.01)
    for s in streams.values():
        s.sock.close()
    ttfts.sort()
    print(json.dumps({
        "streams": args.streams, "connected": connected, "open_at_end": len(streams),
        "seconds": round(elapsed, 3),
        "completed": completed, "events": events, "errors": errors,
        "ttft_ms": {"p50": percentile(ttfts, 0.5), "p90": percentile(ttfts, 0.9),
                    "p99": percentile(ttfts, 0.99), "count": len(ttfts)},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
