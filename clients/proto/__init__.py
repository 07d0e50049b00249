# Generated protobuf modules of the Arrow Flight SQL protocol (and the Flight session /
# CancelFlightInfo messages). Regenerate from the repository root with:
#
#   .venv/bin/python -m grpc_tools.protoc -I clients/proto --python_out=clients/proto --pyi_out=clients/proto clients/proto/*.proto
#
# The .proto files import nothing from each other (FlightSessions.proto only imports the
# well-known google/protobuf/timestamp.proto shipped with the protobuf runtime), so the
# generated *_pb2 modules import cleanly as ``clients.proto.FlightSql_pb2`` and
# ``clients.proto.FlightSessions_pb2`` without any import rewriting.
#
# The generated code pins the minimum protobuf runtime to the protoc version used by
# grpcio-tools (see "Protobuf Python Version" at the top of each *_pb2.py).
"""Arrow Flight SQL protobuf definitions (generated code; see the comment above)."""
