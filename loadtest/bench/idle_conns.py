#!/usr/bin/env python3
"""Hold N idle keep-alive connections open on a proxy, for measuring its memory per connection.

Opens N connections to 127.0.0.1:PORT, sends one POST on each (at most --parallel at a time, so
the proxy needs no more upstream connections than a normal load would) and reads the whole
answer, then prints "ready OK FAILED" and keeps every connection open and idle until its
standard input closes (or --hold seconds pass). Exits 1 when any exchange failed.

  idle_conns.py --port 18094 --count 10000 < fifo
"""
import argparse
import asyncio
import os
import sys

BODY = b'{"instances":[[0.5,1.5,2.5,3.5]]}'


async def exchange(port, path, sem, deadline_s):
    async with sem:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), deadline_s)
        writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(BODY), BODY))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline_s)
        status = head.split(b" ", 2)[1]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        await asyncio.wait_for(reader.readexactly(length), deadline_s)
        return status == b"200", writer


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--path", default="/v1/models/m:predict")
    ap.add_argument("--hold", type=float, default=120.0, help="seconds to hold at most")
    args = ap.parse_args()
    sem = asyncio.Semaphore(args.parallel)
    results = await asyncio.gather(*(exchange(args.port, args.path, sem, 10.0) for _ in range(args.count)),
                                   return_exceptions=True)
    ok = sum(1 for r in results if not isinstance(r, BaseException) and r[0])
    failed = args.count - ok
    print(f"ready {ok} {failed}", flush=True)
    loop = asyncio.get_running_loop()
    try:  # hold until stdin closes (the harness is done measuring) or the hold time ends
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), args.hold)
    except asyncio.TimeoutError:
        pass
    for r in results:
        if not isinstance(r, BaseException):
            r[1].close()
    return 1 if failed else 0


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    os._exit(code)  # the thread still reading stdin must not hold the exit up
