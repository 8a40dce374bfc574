#!/usr/bin/env python3
"""An OpenTelemetry trace collector for shmesh's tracing test: it serves
OTLP over gRPC (``TraceService/Export``) and prints what it is sent.

``--addr 127.0.0.82:0`` (port 0 lets the OS pick). The first line of stdout
is ``PORT <n>`` once bound; then one JSON line per resource of each export:
``{"service": "<service.name>", "spans": [{"name": ..., "kind": ...}]}``.
Serves until killed.
"""

import argparse
import json
import signal
import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.trace.v1 import trace_pb2


def service_name(resource) -> str:
    for attribute in resource.attributes:
        if attribute.key == "service.name":
            return attribute.value.string_value
    return ""


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            spans = [
                {"name": span.name, "kind": trace_pb2.Span.SpanKind.Name(span.kind)}
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]
            line = {"service": service_name(resource_spans.resource), "spans": spans}
            print(json.dumps(line), flush=True)
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port(args.addr)
    if port == 0:
        print(f"cannot bind {args.addr}", file=sys.stderr)
        return 1
    server.start()
    print(f"PORT {port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
