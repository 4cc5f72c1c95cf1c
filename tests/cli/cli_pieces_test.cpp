// The CLI's pieces in process: option parsers, JSON lines, milliseconds,
// the latency histogram and the progress line (the binary end to end, and
// --resume's rewrite of a file: cli_test.cpp).

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "output.hpp"
#include "parse.hpp"
#include "spindle/error.hpp"

namespace {

using json = nlohmann::json;

TEST(CliParse, DurationsRatesShardsHeadersSizes) {
  using namespace spindle::cli;
  EXPECT_EQ(parse_duration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(parse_duration("2s"), std::chrono::seconds(2));
  EXPECT_EQ(parse_duration("1m"), std::chrono::minutes(1));
  EXPECT_EQ(parse_duration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_THROW((void)parse_duration("5x"), std::invalid_argument);
  EXPECT_THROW((void)parse_duration(""), std::invalid_argument);
  EXPECT_THROW((void)parse_duration("-1s"), std::invalid_argument);
  EXPECT_DOUBLE_EQ(parse_rate("50/s"), 50);
  EXPECT_DOUBLE_EQ(parse_rate("600/m"), 10);
  EXPECT_THROW((void)parse_rate("0/s"), std::invalid_argument);
  EXPECT_EQ(parse_shard("2/5").k, 2u);
  EXPECT_EQ(parse_shard("2/5").n, 5u);
  EXPECT_THROW((void)parse_shard("5/5"), std::invalid_argument);
  EXPECT_THROW((void)parse_shard("1"), std::invalid_argument);
  EXPECT_EQ(parse_header("X-Token:  abc ").second, "abc");
  EXPECT_THROW((void)parse_header("X-Bad: a\r\nInjected: b"), std::invalid_argument);
  EXPECT_EQ(parse_bytes("64k"), 65536u);
  EXPECT_EQ(parse_bytes("10M"), 10u << 20);
  EXPECT_THROW((void)parse_bytes("ten"), std::invalid_argument);
}

TEST(CliOutput, JsonEscapingTextDetectionAndBase64) {
  using namespace spindle::cli;
  std::string s;
  append_json_string(s, std::string("a\"b\\c\n\x01\xff\xc3\xa9", 10));
  EXPECT_EQ(s, "\"a\\\"b\\\\c\\n\\u0001\\ufffd\xc3\xa9\"");
  EXPECT_TRUE(json::parse(s).is_string());
  EXPECT_TRUE(is_text("héllo"));
  EXPECT_FALSE(is_text(std::string("a\0b", 3)));
  EXPECT_FALSE(is_text("\xc3("));
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
}

TEST(CliOutput, ResultLinesAndMilliseconds) {
  using namespace spindle::cli;
  for (auto [ms, text] : std::vector<std::pair<double, std::string>>{{0, "0.000"},
                                                                     {0.0004, "0.000"},
                                                                     {0.0006, "0.001"},
                                                                     {12.3456, "12.346"},
                                                                     {999.9996, "1000.000"},
                                                                     {1500, "1500.000"},
                                                                     {86400000.25, "86400000.250"}}) {
    std::string s;
    append_millis(s, ms);
    EXPECT_EQ(s, text) << ms;
  }
  fetch_result r;
  r.index = 7;
  r.url = "http://h/\"q\"";
  r.status = 503;
  r.attempts = 3;
  r.elapsed_ms = 41.5;
  r.bytes = 12;
  r.error_kind = "http_status";
  r.error_message = "HTTP 503 Service Unavailable";
  std::string line;
  append_result_line(line, r);
  EXPECT_EQ(line,
            "{\"index\":7,\"url\":\"http://h/\\\"q\\\"\",\"ok\":false,\"status\":503,\"attempts\":3,"
            "\"elapsed_ms\":41.500,\"bytes\":12,\"error\":{\"kind\":\"http_status\",\"message\":\"HTTP 503 "
            "Service Unavailable\"}}\n");
  EXPECT_TRUE(json::parse(line).is_object());
}

TEST(CliOutput, ProgressLine) {
  using namespace spindle::cli;
  progress_counts c;
  c.ok = 30;
  c.failed = 10;
  c.read = 100;
  c.in_flight = 8;
  c.secs = 2.0;
  EXPECT_EQ(progress_line(c), "\r\x1b[K40 done ok=30 failed=10 8 in flight 20.0/s 2.0s (reading input)");
  c.total = 200;  // counted ahead (a regular file): the bar before the input is all read
  EXPECT_EQ(progress_line(c),
            "\r\x1b[K[####....................]  20% 40/200 ok=30 failed=10 8 in flight 20.0/s 2.0s eta 8s");
  c.total = 0;
  c.input_done = true;  // the total is known: a bar, the share done and an ETA (60 left at 20/s)
  EXPECT_EQ(progress_line(c),
            "\r\x1b[K[#########...............]  40% 40/100 ok=30 failed=10 8 in flight 20.0/s 2.0s eta 3s");
  c.ok = 90;
  EXPECT_EQ(progress_line(c),
            "\r\x1b[K[########################] 100% 100/100 ok=90 failed=10 8 in flight 50.0/s 2.0s eta 0s");
}

}  // namespace

namespace {

// `--shard auto` (issue #16 point 9): the shard from a batch engine's array
// variables.
TEST(CliParse, ShardFromTheBatchEngine) {
  using spindle::cli::shard_from_environment;
  auto env_of = [](std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  };
  // Kubernetes Indexed Job: the index, the count from --shard-count or SPINDLE_SHARD_COUNT.
  auto k8s = shard_from_environment(4, env_of({{"JOB_COMPLETION_INDEX", "3"}}));
  EXPECT_EQ(k8s.k, 3u);
  EXPECT_EQ(k8s.n, 4u);
  EXPECT_EQ(shard_from_environment(std::nullopt,
                                   env_of({{"JOB_COMPLETION_INDEX", "1"}, {"SPINDLE_SHARD_COUNT", "2"}}))
                .n,
            2u);
  EXPECT_THROW((void)shard_from_environment(std::nullopt, env_of({{"JOB_COMPLETION_INDEX", "1"}})),
               std::invalid_argument);  // no count anywhere
  // Slurm: --array=10-40:10 gives IDs 10, 20, 30, 40 (MIN 10, STEP 10, COUNT 4).
  auto slurm = shard_from_environment(std::nullopt, env_of({{"SLURM_ARRAY_TASK_ID", "30"},
                                                            {"SLURM_ARRAY_TASK_MIN", "10"},
                                                            {"SLURM_ARRAY_TASK_STEP", "10"},
                                                            {"SLURM_ARRAY_TASK_COUNT", "4"}}));
  EXPECT_EQ(slurm.k, 2u);
  EXPECT_EQ(slurm.n, 4u);
  // AWS Batch.
  auto aws = shard_from_environment(
      std::nullopt, env_of({{"AWS_BATCH_JOB_ARRAY_INDEX", "0"}, {"AWS_BATCH_JOB_ARRAY_SIZE", "5"}}));
  EXPECT_EQ(aws.k, 0u);
  EXPECT_EQ(aws.n, 5u);
  // Nothing set, a bad number, an index not below the count: errors naming what was read.
  try {
    (void)shard_from_environment(std::nullopt, env_of({}));
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("SLURM_ARRAY_TASK_ID"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)shard_from_environment(std::nullopt, env_of({{"AWS_BATCH_JOB_ARRAY_INDEX", "x"},
                                                                  {"AWS_BATCH_JOB_ARRAY_SIZE", "5"}})),
               std::invalid_argument);
  EXPECT_THROW((void)shard_from_environment(std::nullopt, env_of({{"AWS_BATCH_JOB_ARRAY_INDEX", "5"},
                                                                  {"AWS_BATCH_JOB_ARRAY_SIZE", "5"}})),
               std::invalid_argument);
}

}  // namespace
