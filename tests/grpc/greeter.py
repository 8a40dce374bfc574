#!/usr/bin/env python3
"""A tiny gRPC greeter for shmesh's proxyless gRPC integration test.

No generated protobuf code: the single method ``/greeter.Greeter/Hello`` is
registered through grpc's generic handler API and carries raw bytes both ways
(the request is ignored, the reply is the server's name in UTF-8).

Modes:

``server --addr 127.0.0.21:0 --name X``
    Serves on ``--addr`` (port 0 lets the OS pick) and prints ``PORT <n>`` as
    the first line of stdout once bound, then serves until killed.

``client --target xds:///greeter.default.svc.cluster.local:50051 --count N [--authority HOST]``
    Makes N unary calls and prints ``REPLY <server name>`` per call on stdout.
    With an ``xds:///`` target, grpc's built-in xDS resolver reads the
    bootstrap named by the ``GRPC_XDS_BOOTSTRAP`` environment variable. Every
    call must finish within the overall ``--deadline`` (default 30 s). Exits 0
    when all calls succeed, 1 (with the gRPC status on stderr) otherwise.

gRPC's own diagnostics go to stderr; set ``GRPC_VERBOSITY=debug`` and
``GRPC_TRACE=xds_client,xds_resolver`` to see the xDS exchange.
"""

import argparse
import os
import signal
import sys
import time
from concurrent import futures

import grpc

SERVICE = "greeter.Greeter"
METHOD = "Hello"
FULL_METHOD = f"/{SERVICE}/{METHOD}"


def serve(addr: str, name: str) -> int:
    reply = name.encode()

    def hello(_request: bytes, _context) -> bytes:
        return reply

    # No serializers: handlers see and return raw bytes.
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(hello)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    try:
        port = server.add_insecure_port(addr)
    except RuntimeError as e:  # newer grpcio raises instead of returning 0
        print(f"greeter server: cannot bind {addr}: {e}", file=sys.stderr)
        return 1
    if port == 0:
        print(f"greeter server: cannot bind {addr}", file=sys.stderr)
        return 1
    server.start()
    print(f"PORT {port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=None))
    server.wait_for_termination()
    return 0


def call(target: str, count: int, deadline_s: float, authority: str | None) -> int:
    if target.startswith("xds:") and not os.environ.get("GRPC_XDS_BOOTSTRAP"):
        print("greeter client: GRPC_XDS_BOOTSTRAP is not set", file=sys.stderr)
        return 1
    deadline = time.monotonic() + deadline_s
    # A gateway routes by the authority (the HTTP/2 :authority header).
    options = [("grpc.default_authority", authority)] if authority else []
    with grpc.insecure_channel(target, options=options) as channel:
        # No serializers: send and receive raw bytes.
        hello = channel.unary_unary(FULL_METHOD)
        for i in range(count):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                print(
                    f"greeter client: overall deadline of {deadline_s}s exceeded "
                    f"after {i} of {count} calls",
                    file=sys.stderr,
                )
                return 1
            try:
                # Fail fast (no wait_for_ready): if xDS resolution fails, the
                # call ends with the resolver's error instead of timing out.
                answer = hello(f"hello {i}".encode(), timeout=remaining)
            except grpc.RpcError as e:
                print(
                    f"greeter client: call {i + 1}/{count} to {target} failed: "
                    f"{e.code()}: {e.details()}",
                    file=sys.stderr,
                )
                return 1
            print(f"REPLY {answer.decode()}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server", help="serve /greeter.Greeter/Hello")
    s.add_argument("--addr", required=True, help="IP:PORT to bind (port 0: any)")
    s.add_argument("--name", required=True, help="name to reply with")
    c = sub.add_parser("client", help="call /greeter.Greeter/Hello")
    c.add_argument("--target", required=True, help="e.g. xds:///host:port")
    c.add_argument("--count", type=int, default=1, help="number of calls")
    c.add_argument("--deadline", type=float, default=30.0, help="overall seconds")
    c.add_argument("--authority", help="the :authority to call with (default: the target's)")
    args = parser.parse_args()
    if args.mode == "server":
        return serve(args.addr, args.name)
    return call(args.target, args.count, args.deadline, args.authority)


if __name__ == "__main__":
    sys.exit(main())
