// The admin API's route table against docs/openapi.json: every operation the document names
// is one the server dispatches, and the server dispatches nothing the document does not name.
#include "stagegate/admin/admin_server.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <utility>

namespace stagegate::admin {
namespace {

using json = nlohmann::json;
using operation_key = std::pair<std::string, std::string>;  // method, path

std::set<operation_key> documented() {
    static const std::set<std::string> methods = {"get",     "put",  "post",  "delete",
                                                  "options", "head", "patch", "trace"};
    const auto doc = json::parse(openapi_document());
    std::set<operation_key> out;
    for (const auto& [path, item] : doc.at("paths").items()) {
        for (const auto& [key, op] : item.items()) {
            if (methods.count(key)) {  // besides "parameters", "summary", ...
                out.insert({key, path});
            }
        }
    }
    return out;
}

TEST(AdminRoutes, TheTableIsTheOpenApiDocument) {
    std::set<operation_key> served;
    for (const auto& op : admin_server::operations()) {
        EXPECT_TRUE(served.insert({op.method, op.path}).second)
            << "twice in the table: " << op.method << " " << op.path;
    }
    const auto doc = documented();
    for (const auto& [method, path] : doc) {
        EXPECT_TRUE(served.count({method, path})) << "documented, not served: " << method << " "
                                                  << path;
    }
    for (const auto& [method, path] : served) {
        EXPECT_TRUE(doc.count({method, path})) << "served, not documented: " << method << " "
                                               << path;
    }
    EXPECT_GE(served.size(), 20u);
}

// Reads need any token (or none: the probes); every change needs an operator's.
TEST(AdminRoutes, OnlyChangesNeedAnOperator) {
    for (const auto& op : admin_server::operations()) {
        EXPECT_EQ(op.needs_operator, op.method != "get") << op.method << " " << op.path;
    }
}

}  // namespace
}  // namespace stagegate::admin
