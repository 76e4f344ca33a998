// core/error: the error and result types shared by every module.
// Owns: stagegate::error (a stable machine code plus a human message) and result<T>.
// Must not touch: anything above core. The data plane uses error codes, never exceptions.
#pragma once

#include <boost/system/result.hpp>

#include <string>
#include <vector>

namespace stagegate {

// One problem found while validating input, located by its JSON pointer path.
struct problem {
    std::string path;
    std::string message;
};

struct error {
    std::string code;     // stable, machine readable: "invalid_config", "unknown_model", ...
    std::string message;  // for people
    std::vector<problem> problems;  // every problem, when validation found several

    static error make(std::string code, std::string message) {
        return error{std::move(code), std::move(message), {}};
    }
    // Everything on one line per problem, for logs and --check-config.
    std::string describe() const;
};

// Lets result<T>::value() throw when it holds an error (control plane only).
[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& loc);

template <class T>
using result = boost::system::result<T, error>;

}  // namespace stagegate
