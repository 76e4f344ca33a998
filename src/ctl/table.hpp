// ctl/table: what the CLI's commands share to print an admin API answer: left-aligned tables,
// and a JSON object's string and number fields read leniently (a missing or mistyped field
// prints as empty or zero: the CLI shows what the server sent, it does not validate it).
#pragma once

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

namespace stagegate::ctl {

// Left-aligned columns, two spaces apart, each line after `indent`.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                 const std::string& indent = "");

// j[key] if it is a string, else "".
std::string str(const nlohmann::json& j, const char* key);

bool has_number(const nlohmann::json& j, const char* key);

// j[key] if it is a number, else 0.
double num(const nlohmann::json& j, const char* key);

}  // namespace stagegate::ctl
