// gRPC calls as routing sees them: which inference service a path names (KServe v2 / Triton's
// inference.GRPCInferenceService, TF Serving's tensorflow.serving.PredictionService and
// ModelService), whether the method is about one model, and that model's name read from the
// call's first message. Only the protobuf fields routing needs are read (varints and
// length-delimited fields, no schema, no copy), so a message of any size costs a few bytes'
// scan. Must not touch: sockets, HTTP/2 framing, the choice of version (route_snapshot.hpp).
#pragma once

#include <string_view>

namespace stagegate::routing {

enum class grpc_service {
    none,
    kserve_v2,  // /inference.GRPCInferenceService/<Method>: models with match.kserve_v2
    tfserving,  // /tensorflow.serving.{PredictionService,ModelService}/<Method>: match.kserve_v1
};

struct grpc_path {
    grpc_service service = grpc_service::none;
    std::string_view method;  // "ModelInfer", "Predict", ...
};

// The service and method a request path names; service none for any other path.
grpc_path parse_grpc_path(std::string_view path);

// Whether the method's request message names a model (KServe v2: field 1 "name"/"model_name";
// TF Serving: field 1 "model_spec", whose field 1 is "name"). The others (ServerLive,
// ServerReady, ServerMetadata, the repository, shared-memory, trace and log calls) are about
// the server and go to a model's stable version.
bool grpc_method_names_model(const grpc_path& call);

// Whether the client sends a stream of messages (Triton's and KServe's ModelStreamInfer,
// bidirectional): such a call is routed by its first message and starts as soon as that has
// arrived; the rest of its messages follow it to the backend as they come. Other methods'
// requests are read whole before they are routed.
bool grpc_method_streams_requests(const grpc_path& call);

// Whether `body` begins with one whole length-prefixed gRPC message (its 5-byte prefix and
// the bytes it announces).
bool holds_whole_grpc_message(std::string_view body);

enum class grpc_read {
    found,       // `name` views the model name inside the body
    absent,      // a well-formed message without the field (or with it empty)
    compressed,  // the first message is compressed (grpc-encoding): its fields cannot be read
    malformed,   // not a gRPC length-prefixed message, or not protobuf
};

struct grpc_model_name {
    grpc_read status = grpc_read::malformed;
    std::string_view name;
};

// The model name in the first length-prefixed message of a gRPC request body.
grpc_model_name read_grpc_model_name(const grpc_path& call, std::string_view body);

}  // namespace stagegate::routing
