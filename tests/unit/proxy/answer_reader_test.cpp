// answer_reader: the HTTP/1.1 answers this process writes for HTTP/2 streams, read back
// into a status, fields, body bytes and trailers, however the writes split them; anything
// else is refused (the stream is then reset).
#include "proxy/answer_reader.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <utility>
#include <vector>

namespace stagegate::proxy {
namespace {

using field_list = std::vector<std::pair<std::string, std::string>>;

field_list listed(const answer_fields& fields, const cached_vector<answer_fields::span>& spans) {
    field_list out;
    for (const auto& s : spans) {
        out.emplace_back(fields.name(s), fields.value(s));
    }
    return out;
}
field_list head_of(const answer_reader& r) {
    return listed(r.fields(), r.fields().head);
}
field_list trailers_of(const answer_reader& r) {
    return listed(r.fields(), r.fields().trailers);
}

// An answer read in one write (as the request path writes most of them).
struct whole_read {
    answer_reader reader;
    cached_string body;
    bool ok = false;
};
whole_read read_whole(const std::string& answer, bool head_request = false) {
    whole_read w;
    if (head_request) {
        w.reader.skip_body();
    }
    w.ok = w.reader.read(answer.data(), answer.size(), w.body);
    return w;
}

const std::string chunked_grpc_answer =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/grpc\r\n"
    "X-Stagegate-Version:  v2 \r\n"
    "Connection: keep-alive\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5\r\nhello\r\n"
    "1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n"
    "0\r\n"
    "Grpc-Status: 0\r\n"
    "grpc-message: fine\r\n"
    "\r\n";

void expect_grpc_answer(const answer_reader& r, const cached_string& body) {
    EXPECT_TRUE(r.header_done());
    EXPECT_TRUE(r.done());
    EXPECT_EQ(r.status(), 200u);
    // Lowercased and trimmed; Connection and Transfer-Encoding left out (RFC 9113 8.2.2).
    EXPECT_EQ(head_of(r),
              (field_list{{"content-type", "application/grpc"}, {"x-stagegate-version", "v2"}}));
    EXPECT_EQ(trailers_of(r), (field_list{{"grpc-status", "0"}, {"grpc-message", "fine"}}));
    EXPECT_EQ(std::string(body), "helloabcdefghijklmnopqrstuvwxyz");
}

TEST(AnswerReader, AChunkedAnswerWithTrailersReadsTheSameInOneWriteAndSplitAnywhere) {
    {
        answer_reader r;
        cached_string body;
        ASSERT_TRUE(r.read(chunked_grpc_answer.data(), chunked_grpc_answer.size(), body));
        expect_grpc_answer(r, body);
    }
    // Every split into two writes, and byte by byte: lines, sizes and CRLFs cut anywhere.
    for (std::size_t cut = 1; cut < chunked_grpc_answer.size(); ++cut) {
        answer_reader r;
        cached_string body;
        ASSERT_TRUE(r.read(chunked_grpc_answer.data(), cut, body)) << cut;
        EXPECT_FALSE(r.done()) << cut;
        ASSERT_TRUE(
            r.read(chunked_grpc_answer.data() + cut, chunked_grpc_answer.size() - cut, body))
            << cut;
        expect_grpc_answer(r, body);
    }
    answer_reader r;
    cached_string body;
    for (const char c : chunked_grpc_answer) {
        ASSERT_TRUE(r.read(&c, 1, body));
    }
    expect_grpc_answer(r, body);
}

TEST(AnswerReader, TheHeadIsDoneBeforeTheBodyComesAndBodyBytesArriveAsWritten) {
    const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    answer_reader r;
    cached_string body;
    ASSERT_TRUE(r.read(head.data(), head.size() - 1, body));
    EXPECT_FALSE(r.header_done());
    ASSERT_TRUE(r.read(head.data() + head.size() - 1, 1, body));
    EXPECT_TRUE(r.header_done());
    EXPECT_FALSE(r.done());
    const std::string event = "a\r\ndata: {}\n\n\r\n";
    ASSERT_TRUE(r.read(event.data(), 7, body));
    EXPECT_EQ(std::string(body), "data");  // relayed before the chunk is whole
    ASSERT_TRUE(r.read(event.data() + 7, event.size() - 7, body));
    EXPECT_EQ(std::string(body), "data: {}\n\n");
    EXPECT_FALSE(r.done());
    const std::string last = "0\r\n\r\n";
    ASSERT_TRUE(r.read(last.data(), last.size(), body));
    EXPECT_TRUE(r.done());
    EXPECT_TRUE(r.fields().trailers.empty());
}

TEST(AnswerReader, SizedEmptyAndBodilessAnswers) {
    {
        const auto w = read_whole("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnopeEXTRA");
        ASSERT_TRUE(w.ok);
        EXPECT_TRUE(w.reader.done());
        EXPECT_EQ(w.reader.status(), 404u);
        EXPECT_EQ(std::string(w.body), "nope");  // what follows the answer is not part of it
        EXPECT_EQ(head_of(w.reader), (field_list{{"content-length", "4"}}));
    }
    for (const std::string& a :
         {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n",
          "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"}) {
        const auto w = read_whole(a);
        ASSERT_TRUE(w.ok) << a;
        EXPECT_TRUE(w.reader.done()) << a;
        EXPECT_TRUE(w.body.empty()) << a;
    }
    // A HEAD request's answer says how long the body would be; none follows.
    const auto w = read_whole("HTTP/1.1 200 OK\r\nContent-Length: 57\r\n\r\n", true);
    ASSERT_TRUE(w.ok);
    EXPECT_TRUE(w.reader.done());
    EXPECT_EQ(head_of(w.reader), (field_list{{"content-length", "57"}}));
}

// A HEAD request's answer carries the backend's Content-Length as it came; Beast, reading the
// backend, let through the same length repeated or as a list, and so does the reader.
TEST(AnswerReader, AHeadAnswersRepeatedContentLengthOfOneValueIsTaken) {
    for (const std::string& a : {
             std::string("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
         }) {
        const auto w = read_whole(a, true);
        ASSERT_TRUE(w.ok) << a;
        EXPECT_TRUE(w.reader.done()) << a;
    }
    for (const std::string& a : {
             std::string("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n"),
         }) {
        EXPECT_FALSE(read_whole(a, true).ok) << a;
    }
}

TEST(AnswerReader, AnInterimAnswerHasNoBody) {
    const auto w = read_whole("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n");
    ASSERT_TRUE(w.ok);
    EXPECT_TRUE(w.reader.done());
    EXPECT_EQ(w.reader.status(), 103u);
}

// The head's 64 KiB bound is the head's: a head just under it is followed by chunks.
TEST(AnswerReader, AHeadNearItsBoundLeavesTheBodyItsOwn) {
    const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Big: " +
                             std::string(answer_reader::max_head_bytes - 100, 'a') + "\r\n\r\n";
    ASSERT_LE(head.size(), answer_reader::max_head_bytes);
    answer_reader r;
    cached_string body;
    ASSERT_TRUE(r.read(head.data(), head.size(), body));
    const std::string rest = "3\r\nabc\r\n0\r\n\r\n";
    ASSERT_TRUE(r.read(rest.data(), rest.size(), body));
    EXPECT_TRUE(r.done());
    EXPECT_EQ(std::string(body), "abc");
}

TEST(AnswerReader, WithoutLengthOrChunkingTheBodyRunsToTheEndAndIsNeverDone) {
    const auto w = read_whole("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome bytes");
    ASSERT_TRUE(w.ok);
    EXPECT_TRUE(w.reader.header_done());
    EXPECT_FALSE(w.reader.done());  // the stream is reset at the end: its client cannot tell
    EXPECT_EQ(std::string(w.body), "some bytes");
}

TEST(AnswerReader, WhatThisProcessNeverWritesIsRefused) {
    const std::string too_long_head =
        "HTTP/1.1 200 OK\r\nX-Big: " + std::string(answer_reader::max_head_bytes, 'a') + "\r\n\r\n";
    for (const std::string& a : {
             std::string("HTTP/2 200 OK\r\n\r\n"),
             std::string("HTTP/1.1 2x0 OK\r\n\r\n"),
             std::string("HTTP/1.1 099 Odd\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),  // a bare LF
             std::string("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\nNon-\xc3\xa9: x\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"),
             std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
             std::string(
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
             std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
             std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY"),
             std::string(
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n"),
             too_long_head,
         }) {
        EXPECT_FALSE(read_whole(a).ok) << a.substr(0, 120);
    }
}

// Names are lowercased and checked 8 bytes at a time, then the rest: every byte value at
// every place of names of 1 to 24 bytes (whole words, and every length of a rest).
TEST(AnswerReader, EveryByteOfANameIsCheckedAndLowercasedWhereverItFalls) {
    for (std::size_t length = 1; length <= 24; ++length) {
        const std::string base = std::string("X-Stagegate-Versionabcdef").substr(0, length);
        for (std::size_t at = 0; at < base.size(); ++at) {
            for (int b = 0; b < 256; ++b) {
                if (b == ':') {
                    continue;  // ends the name
                }
                std::string name = base;
                name[at] = static_cast<char>(b);
                const std::string a = "HTTP/1.1 204 No Content\r\n" + name + ": v\r\n\r\n";
                const auto w = read_whole(a);
                const bool valid = b > ' ' && b < 0x7f;
                ASSERT_EQ(w.ok, valid) << length << " " << at << " " << b;
                if (!valid) {
                    continue;
                }
                std::string lower = name;
                for (auto& c : lower) {
                    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                }
                ASSERT_EQ(head_of(w.reader), (field_list{{lower, "v"}})) << at << " " << b;
            }
        }
    }
}

// An HTTP/2 backend's answer is given in parts: its body bytes are taken as they are, even
// those that would read as chunk framing or a second answer, and it ends when told.
TEST(AnswerReader, AnAnswerGivenInPartsTakesItsBodyAsItIsAndEndsWhenTold) {
    answer_reader r;
    r.give_head(200);
    r.given_fields().add_head("content-type", "application/grpc");
    r.given_fields().add_head("x-stagegate-version", "v2");
    EXPECT_TRUE(r.header_done());
    EXPECT_FALSE(r.done());
    EXPECT_EQ(r.status(), 200u);
    cached_string body;
    const std::string bytes = "5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    ASSERT_TRUE(r.read(bytes.data(), 7, body));
    ASSERT_TRUE(r.read(bytes.data() + 7, bytes.size() - 7, body));
    EXPECT_EQ(std::string(body), bytes);
    EXPECT_FALSE(r.done());
    r.given_fields().add_trailer("grpc-status", "0");
    r.end_given();
    EXPECT_TRUE(r.done());
    EXPECT_EQ(head_of(r),
              (field_list{{"content-type", "application/grpc"}, {"x-stagegate-version", "v2"}}));
    EXPECT_EQ(trailers_of(r), (field_list{{"grpc-status", "0"}}));
    ASSERT_TRUE(r.read("more", 4, body));  // after its end: not part of it
    EXPECT_EQ(std::string(body), bytes);
}

TEST(AnswerReader, ALongStreamOfChunksIsNotHeldToTheHeadsBound) {
    answer_reader r;
    cached_string body;
    const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    ASSERT_TRUE(r.read(head.data(), head.size(), body));
    const std::string chunk = "1\r\nx\r\n";
    // More size lines than the head's bound holds bytes of: each has the bound of its own.
    const std::size_t chunks = answer_reader::max_head_bytes / 3 + 1;
    for (std::size_t i = 0; i < chunks; ++i) {
        ASSERT_TRUE(r.read(chunk.data(), chunk.size(), body)) << i;
    }
    EXPECT_EQ(body.size(), chunks);
    const std::string last = "0\r\ngrpc-status: 0\r\n\r\n";
    ASSERT_TRUE(r.read(last.data(), last.size(), body));
    EXPECT_TRUE(r.done());
}

}  // namespace
}  // namespace stagegate::proxy
