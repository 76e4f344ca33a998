#include "stagegate/core/command_line.hpp"

namespace stagegate {

namespace po = boost::program_options;

std::string describe_option_error(const po::error& e) {
    const auto* named = dynamic_cast<const po::error_with_option_name*>(&e);
    if (!named) {
        return e.what();
    }
    // The option as written, less an attached value ("--bogus=1" is about --bogus).
    std::string name = named->get_option_name();
    name = name.substr(0, name.find('='));
    if (dynamic_cast<const po::unknown_option*>(&e)) {
        return "unknown option " + name;
    }
    if (dynamic_cast<const po::multiple_occurrences*>(&e)) {
        return name + " given more than once";
    }
    if (const auto* syntax = dynamic_cast<const po::invalid_command_line_syntax*>(&e)) {
        switch (syntax->kind()) {
            case po::invalid_syntax::extra_parameter:
                return name + " takes no value";
            case po::invalid_syntax::missing_parameter:
            case po::invalid_syntax::empty_adjacent_parameter:
                return name + " needs a value";
            default:
                break;
        }
    }
    return e.what();
}

}  // namespace stagegate
