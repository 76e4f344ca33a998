#include "stagegate/rollout/state_store.hpp"
#include "stagegate/core/json.hpp"

#include "stagegate/core/text.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <type_traits>

namespace stagegate::rollout {

namespace {

error io_error(const std::string& what, const std::string& path) {
    return error::make("state_io_failed", what + " " + path + ": " + std::strerror(errno));
}

// write(2) all of it, retrying short writes and EINTR.
bool write_all(int fd, const std::string& data) {
    const char* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    return true;
}

bool fsync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

// Model names are validated by config (no '/', ':' or spaces); escape anything else odd.
std::string file_name_for(const std::string& model) { return percent_encode(model, "-_."); }

}  // namespace

result<state_store> state_store::open(const std::string& dir, std::uint64_t max_log_bytes) {
    if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
        return io_error("cannot create state directory", dir);
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return io_error("cannot use as a state directory", dir);
    }
    if (::access(dir.c_str(), W_OK) != 0) {
        return io_error("cannot write to state directory", dir);
    }
    state_store store(dir, max_log_bytes);
    store.recover_log();
    store.catch_up_snapshots();
    return store;
}

namespace {
// Every well-formed event line of one file, in order; `f(event)` or `f(event, offset, length)`
// (the line's place in the file, its newline left out).
template <class F>
void for_each_event(const std::string& path, F&& f) {
    std::ifstream in(path);
    std::uint64_t offset = 0;
    for (std::string line; std::getline(in, line);) {
        auto j = parse_json(line);
        if (!j.is_discarded() && j.is_object()) {  // a torn line after a crash is skipped
            if constexpr (std::is_invocable_v<F, const nlohmann::json&>) {
                f(j);
            } else {
                f(j, offset, line.size());
            }
        }
        offset += line.size() + 1;
    }
}
}  // namespace

std::uint32_t state_store::model_index(const std::string& model) {
    return model_ids_.try_emplace(model, static_cast<std::uint32_t>(model_ids_.size()))
        .first->second;
}

void state_store::index_event(const nlohmann::json& event, bool rotated, std::uint64_t offset,
                              std::size_t length) {
    const auto id = event.find("id");
    if (id == event.end() || !id->is_number_unsigned()) {
        return;
    }
    const auto model = event.find("model");
    index_.push_back({id->get<std::uint64_t>(), offset, static_cast<std::uint32_t>(length),
                      model_index(model != event.end() && model->is_string()
                                      ? model->get<std::string>()
                                      : std::string()),
                      rotated});
}

void state_store::recover_log() {
    // A line without its newline is a write a crash cut short: its append never returned, so
    // nothing was acknowledged or routed by it. It is cut off, so the log only ever holds
    // whole records and the next one starts a fresh line.
    if (int fd = ::open(log_path().c_str(), O_RDWR | O_CLOEXEC); fd >= 0) {
        struct stat st {};
        off_t end = ::fstat(fd, &st) == 0 ? st.st_size : 0;
        off_t keep = end;
        char block[4096];
        while (keep > 0) {
            const off_t from = std::max<off_t>(0, keep - static_cast<off_t>(sizeof block));
            const auto n = ::pread(fd, block, static_cast<std::size_t>(keep - from), from);
            if (n <= 0) {
                break;
            }
            off_t i = static_cast<off_t>(n);
            while (i > 0 && block[i - 1] != '\n') {
                --i;
            }
            if (i > 0) {
                keep = from + i;  // just after the last newline
                break;
            }
            keep = from;
        }
        if (keep < end && ::ftruncate(fd, keep) == 0) {
            ::fsync(fd);
        }
        ::close(fd);
    }
    index_.clear();
    for (const bool rotated : {true, false}) {
        for_each_event(rotated ? log_path() + ".1" : log_path(),
                       [&](const nlohmann::json& j, std::uint64_t offset, std::size_t length) {
                           if (j.contains("id") && j["id"].is_number_unsigned()) {
                               last_id_ = std::max(last_id_, j["id"].get<std::uint64_t>());
                           }
                           index_event(j, rotated, offset, length);
                       });
    }
    // Ids only grow in the files; sorted anyway, so a hand-edited log cannot break paging.
    std::stable_sort(index_.begin(), index_.end(),
                     [](const indexed_event& a, const indexed_event& b) { return a.id < b.id; });
}

std::map<std::string, nlohmann::json> state_store::logged_records() const {
    std::map<std::string, nlohmann::json> records;
    for (const std::string& path : {log_path() + ".1", log_path()}) {
        for_each_event(path, [&](const nlohmann::json& j) {
            const auto it = j.find("state");
            if (it != j.end() && it->is_object() && it->contains("model") &&
                (*it)["model"].is_string()) {
                records[(*it)["model"].get<std::string>()] = *it;
            }
        });
    }
    return records;
}

void state_store::catch_up_snapshots() {
    for (const auto& [model, state] : logged_records()) {
        std::ifstream in(state_path(model));
        const std::string text((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
        auto snapshot = parse_json(text);
        if (!snapshot.is_object() || snapshot.value("sequence", std::uint64_t{0}) !=
                                         state.value("sequence", std::uint64_t{0})) {
            (void)save(model, state);  // best effort: the log stays the record either way
        }
    }
}

std::string state_store::state_path(const std::string& model) const {
    return dir_ + "/rollout-" + file_name_for(model) + ".json";
}

result<void> state_store::save(const std::string& model, const nlohmann::json& state) {
    const std::string path = state_path(model);
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        return io_error("cannot create", tmp);
    }
    const std::string text = state.dump(2) + "\n";
    if (!write_all(fd, text) || ::fsync(fd) != 0) {
        auto e = io_error("cannot write", tmp);
        ::close(fd);
        ::unlink(tmp.c_str());
        return e;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        auto e = io_error("cannot rename onto", path);
        ::unlink(tmp.c_str());
        return e;
    }
    if (!fsync_dir(dir_)) {
        return io_error("cannot fsync", dir_);
    }
    return {};
}

result<void> state_store::record(const std::string& model, const nlohmann::json& state,
                                 nlohmann::json event) {
    event["state"] = state;
    if (auto logged = append_event(std::move(event)); !logged) {
        return logged.error();
    }
    // Recorded: the snapshot only saves the next start a read of the log.
    (void)save(model, state);
    return {};
}

result<std::map<std::string, nlohmann::json>> state_store::load_all() const {
    std::map<std::string, nlohmann::json> out;
    DIR* d = ::opendir(dir_.c_str());
    if (!d) {
        return io_error("cannot read state directory", dir_);
    }
    std::vector<std::string> damaged;  // snapshot files that do not parse
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.rfind("rollout-", 0) != 0 || name.size() < 14 ||
            name.compare(name.size() - 5, 5, ".json") != 0) {
            continue;  // leftovers like *.json.tmp from a crash are ignored on purpose
        }
        std::ifstream in(dir_ + "/" + name);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        auto j = parse_json(text);
        if (j.is_discarded() || !j.is_object() || !j.contains("model") ||
            !j["model"].is_string()) {
            damaged.push_back(name);
            continue;
        }
        std::string model = j["model"].get<std::string>();
        out[model] = std::move(j);
    }
    ::closedir(d);
    // The log's records are in commit order and never older than a snapshot (which is written
    // after its record): the last record of a model wins. A crash between the two, or a
    // snapshot that could not be written, leaves the log ahead.
    for (auto& [model, state] : logged_records()) {
        out[model] = std::move(state);
    }
    // A damaged snapshot (a 0-byte file, a disk error) is harmless when the log holds its
    // model's record; otherwise the model's state is unknown, and is reported, never skipped.
    std::vector<problem> problems;
    for (const auto& name : damaged) {
        const auto model = percent_decode(name.substr(8, name.size() - 13), false);
        if (!model || !out.count(*model)) {
            problems.push_back({dir_ + "/" + name,
                                "not a rollout state document, and the event log holds no "
                                "record of its model: move it aside once the rollout's state "
                                "is known"});
        }
    }
    if (!problems.empty()) {
        return error{"state_corrupt", "unreadable rollout state", std::move(problems)};
    }
    return out;
}

result<void> state_store::append_event(nlohmann::json event) {
    const std::string path = log_path();
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) >= max_log_bytes_) {
        const std::string rotated = path + ".1";
        if (::rename(path.c_str(), rotated.c_str()) != 0) {
            return io_error("cannot rotate", path);
        }
        fsync_dir(dir_);
        // The old rotated file is gone; the current one is the rotated one now.
        std::erase_if(index_, [](const indexed_event& e) { return e.rotated; });
        for (auto& e : index_) {
            e.rotated = true;
        }
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        return io_error("cannot open", path);
    }
    event["id"] = last_id_ + 1;
    // One write per line: O_APPEND keeps lines whole; a crash can only lose the tail line,
    // which a reader recognises by its missing newline. A write that fails part way (a full
    // disk, a file size limit) is cut back off, so the log never holds half a line.
    const std::string line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    struct stat before {};
    const bool sized = ::fstat(fd, &before) == 0;
    bool ok = write_all(fd, line) && ::fsync(fd) == 0;
    if (!ok) {
        auto e = io_error("cannot append to", path);
        if (sized) {
            (void)::ftruncate(fd, before.st_size);
            ::fsync(fd);
        }
        ::close(fd);
        return e;
    }
    ::close(fd);
    ++last_id_;
    if (sized) {
        index_event(event, false, static_cast<std::uint64_t>(before.st_size), line.size() - 1);
    } else {
        recover_log();  // where the line landed is unknown: index the files afresh
    }
    if (listener_) {
        listener_(event);
    }
    return {};
}

std::vector<nlohmann::json> state_store::recent_events(std::size_t limit,
                                                       const std::string& model) const {
    std::deque<nlohmann::json> keep;
    for_each_event(log_path(), [&](const nlohmann::json& j) {
        if (!model.empty() && j.value("model", "") != model) {
            return;
        }
        keep.push_back(j);
        if (keep.size() > limit) {
            keep.pop_front();
        }
    });
    return {keep.begin(), keep.end()};
}

state_store::page state_store::events(std::size_t limit, const std::string& model,
                                      std::uint64_t before_id, std::uint64_t after_id) const {
    page out;
    std::optional<std::uint32_t> only;
    if (!model.empty()) {
        auto it = model_ids_.find(model);
        if (it == model_ids_.end()) {
            return out;
        }
        only = it->second;
    }
    // Newest first from just below before_id, until the page is full and one more shows
    // there are older ones.
    auto from = before_id ? std::lower_bound(index_.begin(), index_.end(), before_id,
                                             [](const indexed_event& e, std::uint64_t id) {
                                                 return e.id < id;
                                             })
                          : index_.end();
    std::vector<const indexed_event*> picked;
    for (auto it = std::make_reverse_iterator(from); it != index_.rend(); ++it) {
        if (it->id <= after_id) {
            break;
        }
        if (only && it->model != *only) {
            continue;
        }
        if (picked.size() == limit) {
            out.more = true;
            break;
        }
        picked.push_back(&*it);
    }
    // Read each picked line where the index says it is; a line that no longer parses (the
    // file changed under us) is left out rather than failing the page.
    int files[2] = {-1, -1};  // rotated, current
    std::string line;
    for (auto it = picked.rbegin(); it != picked.rend(); ++it) {
        const auto& e = **it;
        int& fd = files[e.rotated ? 0 : 1];
        if (fd < 0) {
            fd = ::open((e.rotated ? log_path() + ".1" : log_path()).c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                continue;
            }
        }
        line.resize(e.length);
        if (::pread(fd, line.data(), e.length, static_cast<off_t>(e.offset)) !=
            static_cast<ssize_t>(e.length)) {
            continue;
        }
        auto j = parse_json(line);
        if (!j.is_discarded() && j.is_object()) {
            out.events.push_back(std::move(j));
        }
    }
    for (int fd : files) {
        if (fd >= 0) {
            ::close(fd);
        }
    }
    return out;
}

}  // namespace stagegate::rollout
