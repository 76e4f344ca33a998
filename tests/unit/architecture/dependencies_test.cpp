// The module graph, checked from the sources themselves: every `#include "stagegate/<module>/"`
// in include/ and src/ must be one the table below allows, so the README's and
// docs/architecture.md's one-way graph cannot drift from the code unnoticed.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// What each module may include besides itself. Lower layers first; nothing points up.
const std::map<std::string, std::set<std::string>>& allowed() {
    static const std::map<std::string, std::set<std::string>> table = {
        {"core", {}},
        {"config", {"core"}},
        {"predictions", {"core", "config"}},
        {"routing", {"core", "config", "predictions"}},
        {"metrics", {"core", "config", "predictions"}},
        {"notify", {"core", "config"}},
        {"proxy", {"core", "config", "predictions", "routing", "metrics"}},
        {"rollout", {"core", "config", "predictions", "metrics", "notify"}},
        {"cluster", {"core", "config", "rollout"}},
        // The data plane host knows nothing of rollouts, clusters or the admin API.
        {"server", {"core", "config", "predictions", "routing", "metrics", "proxy"}},
        {"control",
         {"core", "config", "predictions", "routing", "metrics", "notify", "rollout", "cluster",
          "server"}},
        // The admin API sees the data plane only through control::plane.
        {"admin",
         {"core", "config", "predictions", "routing", "metrics", "notify", "rollout", "control"}},
        {"app", {"core", "config", "server", "control", "admin"}},
        {"main", {"core", "config", "app"}},
        // speaks HTTP to the admin API; reads its phases back in config's vocabulary
        {"ctl", {"core", "config"}},
        {"mockmodel", {"core"}},
    };
    return table;
}

struct include_edge {
    std::string file;
    std::string from;
    std::string to;
};

// Every cross-module include under `root` (include/stagegate or src), by module directory.
std::vector<include_edge> edges_under(const fs::path& root) {
    std::vector<include_edge> out;
    const std::regex include_line(R"(^\s*#\s*include\s+"stagegate/(\w+)/)");
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
        if (!entry.is_regular_file()) {
            continue;
        }
        const auto rel = fs::relative(entry.path(), root);
        const std::string module =
            std::distance(rel.begin(), rel.end()) > 1 ? rel.begin()->string() : "main";
        std::ifstream in(entry.path());
        std::string line;
        std::smatch m;
        while (std::getline(in, line)) {
            if (std::regex_search(line, m, include_line) && m[1] != module) {
                out.push_back({entry.path().string(), module, m[1]});
            }
        }
    }
    return out;
}

TEST(Architecture, EveryIncludeFollowsTheOneWayModuleGraph) {
    const fs::path source = STAGEGATE_SOURCE_DIR;
    std::size_t seen = 0;
    for (const auto& root : {source / "include" / "stagegate", source / "src"}) {
        for (const auto& e : edges_under(root)) {
            ++seen;
            const auto it = allowed().find(e.from);
            ASSERT_NE(it, allowed().end())
                << "module " << e.from << " (" << e.file
                << ") is not in the table: add it with what it may depend on";
            EXPECT_TRUE(it->second.count(e.to))
                << e.file << ": " << e.from << " must not include " << e.to;
        }
    }
    EXPECT_GT(seen, 50u);  // the walk found the sources
}

// The table itself is one-way: no module reaches itself through what it may include.
TEST(Architecture, TheModuleTableHasNoCycle) {
    std::map<std::string, int> state;  // 0 unseen, 1 on the path, 2 done
    std::function<bool(const std::string&)> acyclic = [&](const std::string& m) {
        if (state[m] == 1) {
            return false;
        }
        if (state[m] == 2) {
            return true;
        }
        state[m] = 1;
        for (const auto& d : allowed().at(m)) {
            if (!acyclic(d)) {
                return false;
            }
        }
        state[m] = 2;
        return true;
    };
    for (const auto& [m, deps] : allowed()) {
        EXPECT_TRUE(acyclic(m)) << "a cycle through " << m;
    }
}

// Beast is header-heavy: public headers stay free of it (compile times).
TEST(Architecture, PublicHeadersDoNotIncludeBeast) {
    const fs::path headers = fs::path(STAGEGATE_SOURCE_DIR) / "include";
    for (const auto& entry : fs::recursive_directory_iterator(headers)) {
        if (!entry.is_regular_file()) {
            continue;
        }
        std::ifstream in(entry.path());
        std::string line;
        while (std::getline(in, line)) {
            EXPECT_EQ(line.find("boost/beast"), std::string::npos) << entry.path();
        }
    }
}

}  // namespace
