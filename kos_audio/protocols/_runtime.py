"""Message classes and gRPC glue built at run time from serialized descriptor sets.

Why not generated ``_pb2`` modules: gencode from grpcio-tools X refuses to load on a protobuf
runtime older than X's, and ROS 2 Jazzy robots have protobuf 3.21 (python package 4.21.x) and
grpcio 1.51 from apt while pip users have protobuf 6/7 and grpcio 1.8x. A descriptor set is
plain data that every protobuf runtime since 3.x can load, and the encodings are identical.

Usage (one schema per protocol, built once at import time of the protocol package)::

    schema = ProtoSchema.from_package_data("kos_audio.protocols.kos", "kos_sound.desc")
    AudioConfig = schema.message_class("kos.sound.AudioConfig")
    methods = schema.methods("kos.sound.SoundService")
    calls = client_callables(channel, methods)            # client side
    handler = generic_handler("kos.sound.SoundService", methods, {...})  # server side

Every file lives in a private :class:`~google.protobuf.descriptor_pool.DescriptorPool`, so the
project's ``kos/sound.proto`` never clashes with another copy (e.g. pykos' generated code)
registered in the default pool of the same process.

Nothing here imports ROS. All functions are thread-safe after construction (read-only data).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Union

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

__all__ = [
    "MethodInfo",
    "MultiCallable",
    "ProtoSchema",
    "client_callables",
    "generic_handler",
]

# Dependencies under this prefix are protobuf's well-known types: they are not shipped in the
# project's descriptor sets but taken from the installed protobuf runtime.
_WELL_KNOWN_PREFIX = "google/protobuf/"

if TYPE_CHECKING:
    from typing import TypeAlias

    # Generic only in the grpc type stubs (types-grpcio), so spelled for type checkers alone.
    MultiCallable: TypeAlias = Union[
        "grpc.UnaryUnaryMultiCallable[Any, Any]",
        "grpc.UnaryStreamMultiCallable[Any, Any]",
        "grpc.StreamUnaryMultiCallable[Any, Any]",
        "grpc.StreamStreamMultiCallable[Any, Any]",
    ]
else:
    MultiCallable = object
"""What :func:`client_callables` returns per method (a grpc ``*MultiCallable``, chosen by the
method's streaming kind); callers ``cast`` it to the kind they know."""


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """One RPC of a service, with the message classes that encode it.

    Attributes:
        name: Short method name, e.g. ``"PlayAudio"``.
        path: gRPC method path, e.g. ``"/kos.sound.SoundService/PlayAudio"``.
        request: Message class of the request (of each request message when client streaming).
        response: Message class of the response (of each one when server streaming).
        client_streaming: Whether the client sends a stream of requests.
        server_streaming: Whether the server answers with a stream of responses.

    """

    name: str
    path: str
    request: type[message.Message]
    response: type[message.Message]
    client_streaming: bool
    server_streaming: bool


class ProtoSchema:
    """A private descriptor pool loaded from serialized ``FileDescriptorSet`` blobs.

    The sets hold the project's ``.proto`` files (produced by ``scripts/gen_protos.py``);
    imports of ``google/protobuf/*.proto`` that the sets do not carry are resolved from the
    installed protobuf package (``google.protobuf.<name>_pb2``).

    Raises (from the constructor):
        ValueError: a blob is not a descriptor set, the same file name appears twice with
            different content, or an import is neither in the sets nor a well-known type.
    """

    def __init__(self, *descriptor_sets: bytes) -> None:
        self._pool = descriptor_pool.DescriptorPool()
        self._files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        for blob in descriptor_sets:
            try:
                fds = descriptor_pb2.FileDescriptorSet.FromString(blob)
            except Exception as err:  # the decode error type differs between runtimes
                raise ValueError(f"not a serialized FileDescriptorSet: {err}") from err
            for file_proto in fds.file:
                known = self._files.get(file_proto.name)
                if known is not None and known != file_proto:
                    raise ValueError(f"{file_proto.name} appears twice with different content")
                self._files[file_proto.name] = file_proto
        added: set[str] = set()
        for name in sorted(self._files):
            self._add_file(name, added, ())
        # Old runtimes (protobuf < 4.22) build classes through one factory per pool; keeping a
        # single factory makes a message field's class identical to the class we hand out.
        self._factory: Any = None
        if not hasattr(message_factory, "GetMessageClass"):
            self._factory = message_factory.MessageFactory(self._pool)
        self._classes: dict[str, type[message.Message]] = {}

    @classmethod
    def from_package_data(cls, package: str, *resource_names: str) -> ProtoSchema:
        """Load descriptor sets shipped as package data (``package`` is a dotted module name).

        Raises:
            FileNotFoundError: a resource is missing (the package was installed without its
                ``.desc`` data files).
            ValueError: as the constructor.

        """
        root = importlib.resources.files(package)
        return cls(*(root.joinpath(name).read_bytes() for name in resource_names))

    @property
    def pool(self) -> descriptor_pool.DescriptorPool:
        """The private pool; read-only by convention."""
        return self._pool

    @property
    def file_names(self) -> tuple[str, ...]:
        """Names of the project files loaded from the sets (well-known imports excluded)."""
        return tuple(sorted(self._files))

    def message_class(self, full_name: str) -> type[message.Message]:
        """The message class of ``full_name`` (e.g. ``"kos.sound.AudioConfig"``), cached.

        Raises:
            KeyError: no such message in the pool.

        """
        cls = self._classes.get(full_name)
        if cls is None:
            desc = self._pool.FindMessageTypeByName(full_name)
            if self._factory is None:
                cls = message_factory.GetMessageClass(desc)
            else:
                cls = self._factory.GetPrototype(desc)
            self._classes[full_name] = cls
        return cls

    def enum_values(self, full_name: str) -> dict[str, int]:
        """Name -> number of the enum ``full_name`` (e.g. ``"kos.common.ErrorCode"``).

        Raises:
            KeyError: no such enum in the pool.

        """
        desc = self._pool.FindEnumTypeByName(full_name)
        return {value.name: value.number for value in desc.values}

    def methods(self, service_full_name: str) -> dict[str, MethodInfo]:
        """The RPCs of ``service_full_name`` keyed by short method name, in declaration order.

        Raises:
            KeyError: no such service in the loaded project files.

        """
        package, _, service_name = service_full_name.rpartition(".")
        for file_proto in self._files.values():
            if file_proto.package != package:
                continue
            for service_proto in file_proto.service:
                if service_proto.name == service_name:
                    return {
                        method.name: self._method_info(service_full_name, method)
                        for method in service_proto.method
                    }
        raise KeyError(service_full_name)

    def _method_info(
        self, service_full_name: str, method: descriptor_pb2.MethodDescriptorProto
    ) -> MethodInfo:
        # Streaming flags come from the FileDescriptorProto because runtime descriptors only
        # expose them on protobuf >= 5 and CopyToProto fails on pool-built descriptors.
        return MethodInfo(
            name=method.name,
            path=f"/{service_full_name}/{method.name}",
            request=self.message_class(method.input_type.lstrip(".")),
            response=self.message_class(method.output_type.lstrip(".")),
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
        )

    def _add_file(self, name: str, added: set[str], chain: tuple[str, ...]) -> None:
        """Add ``name`` after its imports (upb pools need dependencies first)."""
        if name in added:
            return
        if name in chain:
            raise ValueError(f"import cycle: {' -> '.join((*chain, name))}")
        file_proto = self._files.get(name)
        if file_proto is None:
            file_proto = _well_known_file(name, chain)
        for dependency in file_proto.dependency:
            self._add_file(dependency, added, (*chain, name))
        self._pool.AddSerializedFile(file_proto.SerializeToString())
        added.add(name)


def _well_known_file(name: str, chain: tuple[str, ...]) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of a well-known type file, from the installed protobuf."""
    importer = chain[-1] if chain else "<root>"
    if not name.startswith(_WELL_KNOWN_PREFIX) or not name.endswith(".proto"):
        raise ValueError(f"{importer} imports {name}, which is not in the descriptor sets")
    module_name = "google.protobuf." + name[len(_WELL_KNOWN_PREFIX) : -len(".proto")] + "_pb2"
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{importer} imports {name}, but {module_name} is missing") from err
    return descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)


def client_callables(
    channel: grpc.Channel, methods: Mapping[str, MethodInfo]
) -> dict[str, MultiCallable]:
    """One gRPC multi-callable per method, keyed like ``methods``.

    The callable's kind follows the method (``unary_unary``, ``unary_stream``, ``stream_unary``,
    ``stream_stream``). Requests are encoded with the request class's ``SerializeToString`` and
    responses decoded with the response class's ``FromString``, so every call, future and
    cancellation feature of grpcio is available unchanged. Thread-safe like the channel.
    """
    out: dict[str, MultiCallable] = {}
    for key, info in methods.items():
        serializer = info.request.SerializeToString
        deserializer = info.response.FromString
        factory: Callable[..., MultiCallable]
        if info.client_streaming and info.server_streaming:
            factory = channel.stream_stream
        elif info.client_streaming:
            factory = channel.stream_unary
        elif info.server_streaming:
            factory = channel.unary_stream
        else:
            factory = channel.unary_unary
        out[key] = factory(
            info.path, request_serializer=serializer, response_deserializer=deserializer
        )
    return out


def generic_handler(
    service_full_name: str,
    methods: Mapping[str, MethodInfo],
    behaviours: Mapping[str, Callable[..., Any]],
) -> grpc.GenericRpcHandler:
    """A server-side handler for ``service_full_name`` from plain callables.

    Args:
        service_full_name: e.g. ``"kos.sound.SoundService"``.
        methods: from :meth:`ProtoSchema.methods` for that service.
        behaviours: method name -> ``fn(request_or_iterator, context)``, following grpcio's
            servicer conventions for the method's streaming kind (return a response, or yield
            responses for server streaming). Methods left out answer ``UNIMPLEMENTED``.

    Raises:
        ValueError: ``behaviours`` names a method the service does not have.

    """
    unknown = sorted(set(behaviours) - set(methods))
    if unknown:
        raise ValueError(f"{service_full_name} has no method(s) {', '.join(unknown)}")
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, behaviour in behaviours.items():
        info = methods[name]
        make: Callable[..., grpc.RpcMethodHandler[Any, Any]]
        if info.client_streaming and info.server_streaming:
            make = grpc.stream_stream_rpc_method_handler
        elif info.client_streaming:
            make = grpc.stream_unary_rpc_method_handler
        elif info.server_streaming:
            make = grpc.unary_stream_rpc_method_handler
        else:
            make = grpc.unary_unary_rpc_method_handler
        handlers[name] = make(
            behaviour,
            request_deserializer=info.request.FromString,
            response_serializer=info.response.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service_full_name, handlers)
