#include "stagegate/core/error.hpp"

#include <stdexcept>

namespace stagegate {

std::string error::describe() const {
    std::string out = code + ": " + message;
    for (const auto& p : problems) {
        out += "\n  ";
        out += p.path.empty() ? "/" : p.path;
        out += ": ";
        out += p.message;
    }
    return out;
}

void throw_exception_from_error(const error& e, const boost::source_location&) {
    throw std::runtime_error(e.describe());
}

}  // namespace stagegate
