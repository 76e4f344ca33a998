// The store-revision rule replicas converge by: a rollout state is adopted only when stored at
// a newer revision than the one routed, whatever order the watch and re-reads deliver them in.
#include "stagegate/cluster/revisions.hpp"

#include <gtest/gtest.h>

namespace stagegate::cluster {
namespace {

TEST(RevisionGate, AdoptsOnlyStatesNewerThanTheOneRouted) {
    revision_gate g;
    EXPECT_EQ(g.of("m"), 0);
    EXPECT_TRUE(g.admit("m", 7));    // the first read
    EXPECT_FALSE(g.admit("m", 7));   // the same state again (a re-read, its own write's event)
    EXPECT_TRUE(g.admit("m", 12));   // a newer decision
    EXPECT_FALSE(g.admit("m", 9));   // a late event from before it: never back over a newer one
    EXPECT_EQ(g.of("m"), 12);
    EXPECT_TRUE(g.admit("other", 3));  // each model by its own key's revision
    EXPECT_EQ(g.highest(), 12);
}

TEST(RevisionGate, ForgetsEverythingWhenTheStoreWasReplaced) {
    revision_gate g;
    EXPECT_FALSE(g.read_at("c1", 40));
    ASSERT_TRUE(g.admit("m", 40));
    EXPECT_FALSE(g.read_at("c1", 40));  // the store at or past it: the same store
    g.saw(55);                          // a watch answer
    EXPECT_FALSE(g.read_at("c1", 55));
    EXPECT_FALSE(g.admit("m", 30));
    // Restored from a snapshot, or a new etcd at the same address: its revisions start lower,
    // and its states must still be adopted.
    EXPECT_TRUE(g.read_at("c1", 5));
    EXPECT_EQ(g.of("m"), 0);
    EXPECT_TRUE(g.admit("m", 4));
    // Another cluster id, even at a higher revision.
    ASSERT_TRUE(g.admit("m", 90));
    EXPECT_TRUE(g.read_at("c2", 100));
    EXPECT_TRUE(g.admit("m", 60));
}

TEST(RevisionGate, AReadAnsweredBeforeItsOwnWriteIsNotAReplacedStore) {
    revision_gate g;
    EXPECT_FALSE(g.read_at("c1", 4));
    ASSERT_TRUE(g.admit("m", 5));  // this replica's own write, at 5
    // A read sent before that write, answered at 4, processed after it: the same store; the
    // older state in it is not adopted.
    EXPECT_FALSE(g.read_at("c1", 4));
    EXPECT_FALSE(g.admit("m", 3));
    EXPECT_EQ(g.of("m"), 5);
}

}  // namespace
}  // namespace stagegate::cluster
