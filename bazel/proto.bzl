"""C++ code generation for .proto files with Debian's protoc and grpc_cpp_plugin.

    cc_grpc_library(
        name = "generate_cc",
        srcs = ["kestrel/v1/generate.proto"],
        deps = [":common_cc"],
    )

runs protoc over `srcs` (paths relative to this package, which is the proto
root: `import "kestrel/v1/common.proto";`) and wraps the generated messages
and gRPC stubs in one cc_library. C++ code includes
"kestrel/v1/generate.pb.h" / ".grpc.pb.h".
"""

def cc_grpc_library(name, srcs, deps = [], grpc = True, **kwargs):
    """Messages (and, when `grpc`, service stubs) for `srcs`.

    Args:
      name: the cc_library's name.
      srcs: .proto files in this package.
      deps: cc_grpc_library targets whose protos `srcs` import.
      grpc: generate service stubs with grpc_cpp_plugin.
      **kwargs: passed to the cc_library.
    """
    bases = [s[:-len(".proto")] for s in srcs]
    outs = [b + ".pb.h" for b in bases] + [b + ".pb.cc" for b in bases]
    if grpc:
        outs += [b + ".grpc.pb.h" for b in bases] + [b + ".grpc.pb.cc" for b in bases]
    package = native.package_name()
    proto_root = package if package else "."
    out_root = "$(GENDIR)/" + package if package else "$(GENDIR)"
    cmd = "/usr/bin/protoc -I{root} --cpp_out={out}".format(root = proto_root, out = out_root)
    if grpc:
        cmd += " --grpc_out={out} --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin".format(out = out_root)
    cmd += " " + " ".join(["$(location {})".format(s) for s in srcs])
    native.genrule(
        name = name + "_protoc",
        srcs = srcs + [d + "_protos" for d in deps],
        outs = outs,
        cmd = cmd,
        message = "protoc " + name,
    )

    # The .proto files, for protos in other targets that import these.
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + [d + "_protos" for d in deps],
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        # Generated code registers each file's descriptors from a static
        # initializer. A file whose symbols nobody references (a service-only
        # .proto) would otherwise be dropped by the linker, and server
        # reflection could not describe it.
        alwayslink = True,
        deps = deps + ["@system//:protobuf"] + (["@system//:grpcpp"] if grpc else []),
        **kwargs
    )
