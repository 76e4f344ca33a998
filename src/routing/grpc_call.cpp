// gRPC paths and the protobuf fields routing reads (see grpc_call.hpp). The wire format
// (protobuf's encoding guide): each field is a varint key (field number << 3 | wire type)
// followed by a varint (type 0), 8 bytes (1), a varint length and that many bytes (2), or
// 4 bytes (5); groups (3, 4) are long deprecated and no inference message has them.
#include "stagegate/routing/grpc_call.hpp"

#include <cstdint>
#include <optional>

namespace stagegate::routing {

namespace {

constexpr std::string_view kserve_prefix = "/inference.GRPCInferenceService/";
constexpr std::string_view tf_predict_prefix = "/tensorflow.serving.PredictionService/";
constexpr std::string_view tf_model_prefix = "/tensorflow.serving.ModelService/";

std::optional<std::uint64_t> read_varint(std::string_view& in) {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
        const auto byte = static_cast<unsigned char>(in.front());
        in.remove_prefix(1);
        value |= std::uint64_t{byte & 0x7fu} << shift;
        if ((byte & 0x80u) == 0) {
            return value;
        }
    }
    return std::nullopt;
}

// The last occurrence of length-delimited field `number` in `message` (protobuf's rule for a
// repeated singular field: the last one wins), or nullopt when the message does not parse.
// `found` says whether it was there.
std::optional<std::string_view> length_field(std::string_view message, std::uint32_t number,
                                             bool& found) {
    found = false;
    std::string_view value;
    while (!message.empty()) {
        const auto key = read_varint(message);
        if (!key || (*key >> 3) == 0) {
            return std::nullopt;
        }
        switch (*key & 7) {
            case 0:
                if (!read_varint(message)) {
                    return std::nullopt;
                }
                break;
            case 1:
                if (message.size() < 8) {
                    return std::nullopt;
                }
                message.remove_prefix(8);
                break;
            case 2: {
                const auto size = read_varint(message);
                if (!size || *size > message.size()) {
                    return std::nullopt;
                }
                if ((*key >> 3) == number) {
                    found = true;
                    value = message.substr(0, *size);
                }
                message.remove_prefix(*size);
                break;
            }
            case 5:
                if (message.size() < 4) {
                    return std::nullopt;
                }
                message.remove_prefix(4);
                break;
            default:
                return std::nullopt;
        }
    }
    return value;
}

}  // namespace

grpc_path parse_grpc_path(std::string_view path) {
    auto method_after = [&](std::string_view prefix, grpc_service service) -> grpc_path {
        const auto method = path.substr(prefix.size());
        if (method.empty() || method.find('/') != std::string_view::npos) {
            return {};
        }
        return {service, method};
    };
    if (path.starts_with(kserve_prefix)) {
        return method_after(kserve_prefix, grpc_service::kserve_v2);
    }
    if (path.starts_with(tf_predict_prefix)) {
        return method_after(tf_predict_prefix, grpc_service::tfserving);
    }
    if (path.starts_with(tf_model_prefix)) {
        return method_after(tf_model_prefix, grpc_service::tfserving);
    }
    return {};
}

bool grpc_method_names_model(const grpc_path& call) {
    const auto m = call.method;
    switch (call.service) {
        case grpc_service::kserve_v2:
            // ModelInferRequest.model_name, ModelReadyRequest/ModelMetadataRequest.name, and
            // Triton's ModelConfigRequest/ModelStatisticsRequest.name: all field 1.
            return m == "ModelInfer" || m == "ModelStreamInfer" || m == "ModelReady" ||
                   m == "ModelMetadata" || m == "ModelConfig" || m == "ModelStatistics";
        case grpc_service::tfserving:
            // PredictRequest, ClassificationRequest, RegressionRequest,
            // GetModelMetadataRequest and GetModelStatusRequest: model_spec is field 1.
            return m == "Predict" || m == "Classify" || m == "Regress" ||
                   m == "GetModelMetadata" || m == "GetModelStatus";
        case grpc_service::none:
            return false;
    }
    return false;
}

bool grpc_method_streams_requests(const grpc_path& call) {
    return call.service == grpc_service::kserve_v2 && call.method == "ModelStreamInfer";
}

bool holds_whole_grpc_message(std::string_view body) {
    if (body.size() < 5) {
        return false;
    }
    std::uint64_t size = 0;
    for (int i = 1; i <= 4; ++i) {
        size = (size << 8) | static_cast<unsigned char>(body[i]);
    }
    return body.size() - 5 >= size;
}

grpc_model_name read_grpc_model_name(const grpc_path& call, std::string_view body) {
    // The length-prefixed message (gRPC over HTTP/2): a compressed flag, a 4-byte big-endian
    // length, the message.
    if (body.size() < 5) {
        return {grpc_read::malformed, {}};
    }
    const auto flag = static_cast<unsigned char>(body[0]);
    if (flag > 1) {
        return {grpc_read::malformed, {}};
    }
    std::uint32_t size = 0;
    for (int i = 1; i <= 4; ++i) {
        size = (size << 8) | static_cast<unsigned char>(body[i]);
    }
    if (size > body.size() - 5) {
        return {grpc_read::malformed, {}};
    }
    if (flag == 1) {
        return {grpc_read::compressed, {}};
    }
    std::string_view message = body.substr(5, size);
    bool found = false;
    if (call.service == grpc_service::tfserving) {
        auto spec = length_field(message, 1, found);
        if (!spec) {
            return {grpc_read::malformed, {}};
        }
        if (!found) {
            return {grpc_read::absent, {}};
        }
        message = *spec;
    }
    auto name = length_field(message, 1, found);
    if (!name) {
        return {grpc_read::malformed, {}};
    }
    if (!found || name->empty()) {
        return {grpc_read::absent, {}};
    }
    return {grpc_read::found, *name};
}

}  // namespace stagegate::routing
