// core/command_line: what stagegate and stagegatectl share in reading their command lines with
// Boost.Program_options: the GNU style both accept, and one wording of its errors, so that
// both name the option a problem is with in the same words.
#pragma once

#include <boost/program_options/errors.hpp>
#include <boost/program_options/cmdline.hpp>

#include <string>

namespace stagegate {

// --name VALUE, --name=VALUE, -n VALUE, -nVALUE, -abc for flags; whole option names only (no
// unique-prefix guessing: a prefix that works today would break when an option is added).
inline constexpr int command_line_style =
    boost::program_options::command_line_style::unix_style ^
    boost::program_options::command_line_style::allow_guessing;

// "unknown option --bogus", "--server needs a value", "--insecure takes no value",
// "--server given more than once"; Program_options' own message for anything else.
std::string describe_option_error(const boost::program_options::error& e);

}  // namespace stagegate
