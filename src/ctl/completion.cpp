// The shell completion scripts of stagegatectl (`stagegatectl completion bash|zsh`), written
// from the command and option tables, so a new command or option completes without editing
// them. Both complete: commands; options (the global ones and the command's own); the values
// of options with choices or file names; and a model for the commands that take one, asked of
// the server with `stagegatectl __models` and the connection options already typed (nothing
// when it does not answer within 2 s).
#include "commands.hpp"

#include <sstream>
#include <string>
#include <vector>

namespace stagegate::ctl {

namespace {

// "--server -s" for an option: its spellings.
std::vector<std::string> spellings(const option_spec& o) {
    std::vector<std::string> out{std::string("--") + o.long_name};
    if (o.short_name) {
        out.push_back(std::string("-") + o.short_name);
    }
    return out;
}

std::string joined(const std::vector<std::string>& words, const char* separator) {
    std::string out;
    for (const auto& w : words) {
        out += (out.empty() ? "" : separator) + w;
    }
    return out;
}

// The words a script needs, gathered once from the tables.
struct vocabulary {
    std::vector<std::string> commands;         // listed ones
    std::vector<std::string> model_commands;   // whose first argument is a model
    std::vector<std::string> global_options;   // every spelling
    std::vector<std::string> connection_valued;  // spellings of connection options with a value
    std::vector<std::string> connection_flags;   // and without
    std::vector<std::string> other_valued;       // other options that take a value
    std::vector<std::string> file_valued;
    // (spellings, choices) of options whose value is one of a few words.
    std::vector<std::pair<std::vector<std::string>, std::string>> choice_valued;

    vocabulary() {
        for (const auto& c : command_table()) {
            if (c.hidden) {
                continue;
            }
            commands.push_back(c.name);
            if (c.operand == completes::model) {
                model_commands.push_back(c.name);
            }
        }
        for (const auto& o : option_table()) {
            const auto names = spellings(o);
            if (o.global) {
                global_options.insert(global_options.end(), names.begin(), names.end());
            }
            if (o.value_name) {
                auto& into = o.connection ? connection_valued : other_valued;
                into.insert(into.end(), names.begin(), names.end());
            } else if (o.connection) {
                connection_flags.insert(connection_flags.end(), names.begin(), names.end());
            }
            if (o.value == completes::file) {
                file_valued.insert(file_valued.end(), names.begin(), names.end());
            } else if (o.value == completes::choice) {
                choice_valued.emplace_back(names, o.choices);
            }
        }
    }

    // A command's own options, as spelled on the command line.
    static std::vector<std::string> own_options(const command_spec& c) {
        std::vector<std::string> out;
        std::istringstream names(c.options);
        for (std::string name; names >> name;) {
            for (const auto& o : option_table()) {
                if (name == o.long_name) {
                    const auto s = spellings(o);
                    out.insert(out.end(), s.begin(), s.end());
                }
            }
        }
        return out;
    }
};

// `word` in single quotes for a shell.
std::string quoted(const std::string& word) {
    std::string out = "'";
    for (char c : word) {
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    return out + "'";
}

}  // namespace

std::string bash_completion_script() {
    const vocabulary v;
    std::ostringstream s;
    s << "# bash completion for stagegatectl, written by `stagegatectl completion bash`.\n"
         "# Enable it with: source <(stagegatectl completion bash)   (e.g. in ~/.bashrc)\n"
         "_stagegatectl() {\n"
         "    # The line up to the cursor, split at blanks (COMP_WORDS would split URLs at ':').\n"
         "    local line=${COMP_LINE:0:COMP_POINT}\n"
         "    local -a words\n"
         "    read -r -a words <<<\"$line\"\n"
         "    [[ -z $line || $line == *[[:space:]] ]] && words+=(\"\")\n"
         "    local cur=${words[${#words[@]}-1]} prev=\n"
         "    (( ${#words[@]} > 1 )) && prev=${words[${#words[@]}-2]}\n"
         "    COMPREPLY=()\n"
         "    case $prev in\n";
    for (const auto& [names, choices] : v.choice_valued) {
        s << "        " << joined(names, "|") << ") COMPREPLY=($(compgen -W "
          << quoted(choices) << " -- \"$cur\")); return ;;\n";
    }
    if (!v.file_valued.empty()) {
        s << "        " << joined(v.file_valued, "|")
          << ") COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n";
    }
    s << "        " << joined(v.connection_valued, "|") << "|" << joined(v.other_valued, "|")
      << ") return ;;\n"
         "    esac\n"
         "    # The command, how many of its arguments are typed, and how to reach the server.\n"
         "    local command= w\n"
         "    local -i i nargs=0\n"
         "    local -a connection=()\n"
         "    for ((i = 1; i < ${#words[@]} - 1; i++)); do\n"
         "        w=${words[i]}\n"
         "        case $w in\n"
         "            " << joined(v.connection_valued, "|")
      << ") connection+=(\"$w\" \"${words[i+1]}\"); i+=1; continue ;;\n"
         "            ";
    {
        std::vector<std::string> attached;
        for (const auto& o : v.connection_valued) {
            if (o.rfind("--", 0) == 0) {
                attached.push_back(o + "=*");
            }
        }
        attached.insert(attached.end(), v.connection_flags.begin(), v.connection_flags.end());
        s << joined(attached, "|") << ") connection+=(\"$w\"); continue ;;\n";
    }
    s << "            " << joined(v.other_valued, "|") << ") i+=1; continue ;;\n"
         "            -*) continue ;;\n"
         "        esac\n"
         "        if [[ -z $command ]]; then command=$w; else nargs+=1; fi\n"
         "    done\n"
         "    if [[ $cur == -* ]]; then\n"
         "        local options=" << quoted(joined(v.global_options, " ")) << "\n"
         "        case $command in\n";
    for (const auto& c : command_table()) {
        const auto own = vocabulary::own_options(c);
        if (!c.hidden && !own.empty()) {
            // Not `" " + joined(...)`: GCC 12 at -O3 reports a false -Wrestrict on it.
            std::string spaced(1, ' ');
            spaced += joined(own, " ");
            s << "            " << c.name << ") options+=" << quoted(spaced) << " ;;\n";
        }
    }
    s << "        esac\n"
         "        COMPREPLY=($(compgen -W \"$options\" -- \"$cur\"))\n"
         "        return\n"
         "    fi\n"
         "    if [[ -z $command ]]; then\n"
         "        COMPREPLY=($(compgen -W " << quoted(joined(v.commands, " "))
      << " -- \"$cur\"))\n"
         "        return\n"
         "    fi\n"
         "    (( nargs == 0 )) || return\n"
         "    case $command in\n";
    if (!v.model_commands.empty()) {
        s << "        " << joined(v.model_commands, "|") << ")\n"
             "            COMPREPLY=($(compgen -W \"$(\"${words[0]}\" \"${connection[@]}\" "
             "--timeout 2 __models 2>/dev/null)\" -- \"$cur\")) ;;\n";
    }
    for (const auto& c : command_table()) {
        if (!c.hidden && c.operand == completes::choice) {
            s << "        " << c.name << ") COMPREPLY=($(compgen -W " << quoted(c.choices)
              << " -- \"$cur\")) ;;\n";
        }
    }
    s << "    esac\n"
         "}\n"
         "complete -F _stagegatectl stagegatectl\n";
    return s.str();
}

std::string zsh_completion_script() {
    const vocabulary v;
    std::ostringstream s;
    s << "#compdef stagegatectl\n"
         "# zsh completion for stagegatectl, written by `stagegatectl completion zsh`.\n"
         "# Enable it with: source <(stagegatectl completion zsh)   (after compinit, e.g. in\n"
         "# ~/.zshrc), or save it as _stagegatectl in a directory of $fpath.\n"
         "_stagegatectl() {\n"
         "    local cur=${words[CURRENT]} prev=${words[CURRENT-1]}\n"
         "    case $prev in\n";
    for (const auto& [names, choices] : v.choice_valued) {
        s << "        (" << joined(names, "|") << ") compadd -- " << choices << "; return ;;\n";
    }
    if (!v.file_valued.empty()) {
        s << "        (" << joined(v.file_valued, "|") << ") _files; return ;;\n";
    }
    s << "        (" << joined(v.connection_valued, "|") << "|" << joined(v.other_valued, "|")
      << ") return ;;\n"
         "    esac\n"
         "    local command= w\n"
         "    local -i i nargs=0\n"
         "    local -a connection\n"
         "    for (( i = 2; i < CURRENT; i++ )); do\n"
         "        w=${words[i]}\n"
         "        case $w in\n"
         "            (" << joined(v.connection_valued, "|")
      << ") connection+=($w ${words[i+1]}); (( i++ )); continue ;;\n"
         "            (";
    {
        std::vector<std::string> attached;
        for (const auto& o : v.connection_valued) {
            if (o.rfind("--", 0) == 0) {
                attached.push_back(o + "=*");
            }
        }
        attached.insert(attached.end(), v.connection_flags.begin(), v.connection_flags.end());
        s << joined(attached, "|") << ") connection+=($w); continue ;;\n";
    }
    s << "            (" << joined(v.other_valued, "|") << ") (( i++ )); continue ;;\n"
         "            (-*) continue ;;\n"
         "        esac\n"
         "        if [[ -z $command ]]; then command=$w; else (( nargs++ )); fi\n"
         "    done\n"
         "    if [[ $cur == -* ]]; then\n"
         "        local -a options\n"
         "        options=(" << joined(v.global_options, " ") << ")\n"
         "        case $command in\n";
    for (const auto& c : command_table()) {
        const auto own = vocabulary::own_options(c);
        if (!c.hidden && !own.empty()) {
            s << "            (" << c.name << ") options+=(" << joined(own, " ") << ") ;;\n";
        }
    }
    s << "        esac\n"
         "        compadd -- $options\n"
         "        return\n"
         "    fi\n"
         "    if [[ -z $command ]]; then\n"
         "        local -a commands\n"
         "        commands=(\n";
    for (const auto& c : command_table()) {
        if (!c.hidden) {
            s << "            " << quoted(std::string(c.name) + ":" + c.summary) << "\n";
        }
    }
    s << "        )\n"
         "        _describe -t commands command commands\n"
         "        return\n"
         "    fi\n"
         "    (( nargs == 0 )) || return\n"
         "    case $command in\n";
    if (!v.model_commands.empty()) {
        s << "        (" << joined(v.model_commands, "|") << ")\n"
             "            compadd -- ${(f)\"$(${words[1]} $connection --timeout 2 __models "
             "2>/dev/null)\"} ;;\n";
    }
    for (const auto& c : command_table()) {
        if (!c.hidden && c.operand == completes::choice) {
            s << "        (" << c.name << ") compadd -- " << c.choices << " ;;\n";
        }
    }
    s << "    esac\n"
         "}\n"
         "if [[ $funcstack[1] == _stagegatectl ]]; then\n"
         "    _stagegatectl \"$@\"\n"
         "else\n"
         "    compdef _stagegatectl stagegatectl\n"
         "fi\n";
    return s.str();
}

}  // namespace stagegate::ctl
