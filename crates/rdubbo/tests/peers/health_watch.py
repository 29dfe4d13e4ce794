"""Follows grpc.health.v1.Health/Watch of each service named, with grpcio-health-checking.

    python3 health_watch.py HOST:PORT SERVICE...     ("" names the server as a whole)

Prints one line per status received, as it arrives: `WATCH <service or -> <STATUS>`, and
`END <service or -> <grpc status code name>` when a watch ends. Exits when its standard
input closes.
"""
import sys
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

lock = threading.Lock()


def say(line):
    with lock:
        print(line, flush=True)


def follow(stub, service):
    name = service or "-"
    try:
        for answer in stub.Watch(health_pb2.HealthCheckRequest(service=service)):
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            say(f"WATCH {name} {status}")
        say(f"END {name} OK")
    except grpc.RpcError as e:
        say(f"END {name} {e.code().name}")


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    stub = health_pb2_grpc.HealthStub(channel)
    for service in sys.argv[2:]:
        threading.Thread(target=follow, args=(stub, service), daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    main()
