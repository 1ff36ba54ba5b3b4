"""Wire layers for kos_audio's gRPC peers, built at run time from the shipped .proto files.

- :mod:`kos_audio.protocols.kos`: the K-Scale KOS ``kos.sound.SoundService`` (TCP).
- :mod:`kos_audio.protocols.resonite_io`: the Resonite IO services (Unix domain socket).

No generated ``_pb2`` code: :mod:`kos_audio.protocols._runtime` builds message classes from
serialized descriptor sets so one package works with protobuf 3.21 (4.21.x) through 7.x.
"""
