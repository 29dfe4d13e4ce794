"""Asks grpc.reflection.v1alpha.ServerReflection questions on streams, with
grpcio-reflection's messages, and prints the names of the files each answer carries.

    python3 reflection_files.py HOST:PORT 'sym:obs.Ping,sym:obs.Pong,file:obs/common.proto' ...

Each argument after the address is one stream: a comma-separated list of questions
(`sym:<symbol>` = file_containing_symbol, `file:<name>` = file_by_filename), asked in
order on that stream. Prints one JSON line: a list (per stream) of lists (per answer) of
file names, or {"error": ...} for an answer with an error.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def question(text):
    kind, _, what = text.partition(":")
    if kind == "sym":
        return reflection_pb2.ServerReflectionRequest(file_containing_symbol=what)
    if kind == "file":
        return reflection_pb2.ServerReflectionRequest(file_by_filename=what)
    raise SystemExit(f"unknown question {text}")


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    streams = []
    for arg in sys.argv[2:]:
        questions = [question(q) for q in arg.split(",")]
        answers = []
        for answer in stub.ServerReflectionInfo(iter(questions), timeout=10):
            if answer.HasField("error_response"):
                answers.append({"error": answer.error_response.error_message})
                continue
            names = [
                descriptor_pb2.FileDescriptorProto.FromString(b).name
                for b in answer.file_descriptor_response.file_descriptor_proto
            ]
            answers.append(names)
        streams.append(answers)
    print(json.dumps(streams), flush=True)


if __name__ == "__main__":
    main()
