// gRPC paths and the model name read from a call's first message, on messages encoded by hand
// from the protocols' field numbers (what grpc-js, Triton's clients and TF Serving's send).
#include "stagegate/routing/grpc_call.hpp"

#include <gtest/gtest.h>

#include <string>

namespace stagegate::routing {
namespace {

// A length-delimited field: key (number << 3 | 2), length, bytes (lengths below 128 here).
std::string field(int number, const std::string& bytes) {
    return std::string{static_cast<char>(number << 3 | 2), static_cast<char>(bytes.size())} +
           bytes;
}

// The gRPC length-prefixed framing around one message.
std::string framed(const std::string& message, bool compressed = false) {
    std::string out{static_cast<char>(compressed ? 1 : 0), 0, 0, 0,
                    static_cast<char>(message.size())};
    return out + message;
}

TEST(GrpcCall, PathsNameTheServiceAndMethod) {
    auto kserve = parse_grpc_path("/inference.GRPCInferenceService/ModelInfer");
    EXPECT_EQ(kserve.service, grpc_service::kserve_v2);
    EXPECT_EQ(kserve.method, "ModelInfer");
    auto tf = parse_grpc_path("/tensorflow.serving.PredictionService/Predict");
    EXPECT_EQ(tf.service, grpc_service::tfserving);
    EXPECT_EQ(tf.method, "Predict");
    EXPECT_EQ(parse_grpc_path("/tensorflow.serving.ModelService/GetModelStatus").service,
              grpc_service::tfserving);
    EXPECT_EQ(parse_grpc_path("/inference.GRPCInferenceService/").service, grpc_service::none);
    EXPECT_EQ(parse_grpc_path("/inference.GRPCInferenceService/A/B").service, grpc_service::none);
    EXPECT_EQ(parse_grpc_path("/v2/models/m/infer").service, grpc_service::none);
    EXPECT_TRUE(grpc_method_names_model(kserve));
    EXPECT_FALSE(grpc_method_names_model(parse_grpc_path("/inference.GRPCInferenceService/ServerLive")));
    EXPECT_FALSE(
        grpc_method_names_model(parse_grpc_path("/inference.GRPCInferenceService/RepositoryIndex")));
}

TEST(GrpcCall, KServeModelNameIsFieldOneWhereverItComes) {
    const auto call = parse_grpc_path("/inference.GRPCInferenceService/ModelInfer");
    // model_version (2) and id (3) first, a varint and a fixed32 field among them.
    const std::string message = field(2, "7") + field(3, "req-1") + std::string{0x20, 0x05} +
                                std::string{0x2d, 1, 2, 3, 4} + field(1, "resnet") +
                                field(5, field(1, "input0"));
    const std::string body = framed(message);  // the name is a view into it
    auto got = read_grpc_model_name(call, body);
    EXPECT_EQ(got.status, grpc_read::found);
    EXPECT_EQ(got.name, "resnet");
}

TEST(GrpcCall, TfServingModelNameIsInsideModelSpec) {
    const auto call = parse_grpc_path("/tensorflow.serving.PredictionService/Predict");
    const std::string spec = field(3, "serving_default") + field(1, "half_plus_two");
    const std::string body = framed(field(1, spec) + field(2, "inputs..."));
    auto got = read_grpc_model_name(call, body);
    EXPECT_EQ(got.status, grpc_read::found);
    EXPECT_EQ(got.name, "half_plus_two");
    EXPECT_EQ(read_grpc_model_name(call, framed(field(2, "no spec"))).status, grpc_read::absent);
}

TEST(GrpcCall, WhatCannotBeReadSaysWhy) {
    const auto call = parse_grpc_path("/inference.GRPCInferenceService/ModelReady");
    EXPECT_EQ(read_grpc_model_name(call, framed(field(2, "1"))).status, grpc_read::absent);
    EXPECT_EQ(read_grpc_model_name(call, framed(field(1, ""))).status, grpc_read::absent);
    EXPECT_EQ(read_grpc_model_name(call, framed(field(1, "m"), true)).status,
              grpc_read::compressed);
    EXPECT_EQ(read_grpc_model_name(call, "").status, grpc_read::malformed);
    EXPECT_EQ(read_grpc_model_name(call, std::string{0, 0, 0, 0, 9, 0x0a}).status,
              grpc_read::malformed);  // the frame claims more bytes than came
    // A field length past the message's end, a group wire type, a truncated varint.
    EXPECT_EQ(read_grpc_model_name(call, framed(std::string{0x0a, 0x7f, 'm'})).status,
              grpc_read::malformed);
    EXPECT_EQ(read_grpc_model_name(call, framed(std::string{0x0b})).status, grpc_read::malformed);
    EXPECT_EQ(read_grpc_model_name(call, framed(std::string{0x08, static_cast<char>(0x80)}))
                  .status,
              grpc_read::malformed);
}

TEST(GrpcCall, OnlyModelStreamInferStreamsItsRequestsAndStartsAtAWholeFirstMessage) {
    EXPECT_TRUE(grpc_method_streams_requests(
        parse_grpc_path("/inference.GRPCInferenceService/ModelStreamInfer")));
    EXPECT_FALSE(
        grpc_method_streams_requests(parse_grpc_path("/inference.GRPCInferenceService/ModelInfer")));
    EXPECT_FALSE(grpc_method_streams_requests(
        parse_grpc_path("/tensorflow.serving.PredictionService/Predict")));
    EXPECT_FALSE(grpc_method_streams_requests(parse_grpc_path("/other.Service/ModelStreamInfer")));
    // The stream's first message names the model as ModelInfer's does.
    const auto stream = parse_grpc_path("/inference.GRPCInferenceService/ModelStreamInfer");
    EXPECT_EQ(read_grpc_model_name(stream, framed(field(1, "m"))).name, "m");

    const auto whole = framed(field(1, "m") + field(3, "id"));
    EXPECT_TRUE(holds_whole_grpc_message(whole));
    EXPECT_TRUE(holds_whole_grpc_message(whole + framed(field(1, "n")).substr(0, 3)));
    EXPECT_FALSE(holds_whole_grpc_message(whole.substr(0, whole.size() - 1)));
    EXPECT_FALSE(holds_whole_grpc_message(whole.substr(0, 4)));
    EXPECT_TRUE(holds_whole_grpc_message(std::string(5, '\0')));  // an empty message
    // A prefix announcing 4 GiB is not whole until they came.
    EXPECT_FALSE(holds_whole_grpc_message(std::string{0, '\xff', '\xff', '\xff', '\xff', 'x'}));
}

}  // namespace
}  // namespace stagegate::routing
