// Private to ctl: the one table stagegatectl's option parsing, dispatch, usage text and shell
// completion scripts are all read from: its options and its subcommands. A new subcommand is
// one row in command_table() (ctl.cpp) and the function it runs.
// Must not touch: HTTP or the server's answers (ctl.cpp and the handlers do).
#pragma once

#include <span>
#include <string>

namespace stagegate::ctl {

class session;  // one run of a command (ctl.cpp): options, connection, output streams

// What a shell completes for an option's value or a command's first argument.
enum class completes {
    nothing,  // free text (a URL, a reason, a number)
    model,    // a model the server knows (asked with GET /api/v1/models when reachable)
    file,     // a file name
    choice,   // one of the row's `choices`
};

struct option_spec {
    const char* long_name;       // "server": --server
    char short_name;             // 's': -s, or 0
    const char* value_name;      // "URL"; nullptr for a flag, which takes no value
    const char* help;
    completes value = completes::nothing;
    const char* choices = "";    // completes::choice: the words, space-separated
    bool connection = false;     // says how to reach the server: the completion scripts pass
                                 // it on when they ask the server for model names
    bool global = true;          // false: a command's own option, listed in its row
};

struct command_spec {
    const char* name;
    const char* synopsis;        // what follows the name in the usage text
    const char* summary;
    completes operand;           // what the first argument after the name is
    const char* choices;         // completes::choice: the words, space-separated
    const char* options;         // the command's own options: long names, space-separated
    int (*run)(session&);
    bool offline = false;        // needs no server and no token (the completion scripts)
    bool hidden = false;         // left out of the usage text and of completion
};

std::span<const option_spec> option_table();
std::span<const command_spec> command_table();

// The completion scripts, generated from the two tables (completion.cpp).
std::string bash_completion_script();
std::string zsh_completion_script();

}  // namespace stagegate::ctl
