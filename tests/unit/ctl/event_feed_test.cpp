// stagegatectl's reading of the admin API's event feed (Server-Sent Events), from the pieces
// core/http_client hands over: events split anywhere, CRLF or LF, fields it does not need.
#include "ctl/event_feed.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace stagegate::ctl {
namespace {

TEST(EventFeed, HandsOverEachEventsDataWhereverThePiecesSplitIt) {
    std::vector<std::string> events;
    event_feed feed([&](const std::string& data) {
        events.push_back(data);
        return true;
    });
    // The feed's own opening (retry, a comment), then two events, the second in CRLF.
    EXPECT_TRUE(feed("retry: 2000\n: stagegate event feed\n\nid: 1\nda"));
    EXPECT_TRUE(events.empty());
    EXPECT_TRUE(feed("ta: {\"id\":1}\n\nid: 2\r\ndata:{\"id\":2}\r\n"));
    EXPECT_EQ(events, (std::vector<std::string>{"{\"id\":1}"}));
    EXPECT_TRUE(feed("\r\n"));
    EXPECT_EQ(events, (std::vector<std::string>{"{\"id\":1}", "{\"id\":2}"}));
}

TEST(EventFeed, JoinsDataLinesAndDropsAnEventCutShort) {
    std::vector<std::string> events;
    event_feed feed([&](const std::string& data) {
        events.push_back(data);
        return true;
    });
    EXPECT_TRUE(feed("data: a\ndata: b\n\ndata: never ended\n"));
    feed("");  // the body's end
    EXPECT_EQ(events, (std::vector<std::string>{"a\nb"}));
}

TEST(EventFeed, StopsWhenTheReaderHasEnough) {
    int seen = 0;
    event_feed feed([&](const std::string&) { return ++seen < 2; });
    EXPECT_TRUE(feed("data: 1\n\n"));
    EXPECT_FALSE(feed("data: 2\n\ndata: 3\n\n"));
    EXPECT_EQ(seen, 2);
}

}  // namespace
}  // namespace stagegate::ctl
