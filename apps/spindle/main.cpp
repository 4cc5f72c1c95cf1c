// The `spindle` command: `spindle fetch` (the main job) and `spindle demo`.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "demo.hpp"
#include "fetch.hpp"
#include "mock_api.hpp"
#include "parse.hpp"

namespace {

using namespace spindle::cli;

// The option values as typed, parsed after CLI11 so each error names its option.
struct raw_fetch {
  std::string concurrency = "64", per_host, timeout = "10s", deadline, retries = "2", backoff = "100ms",
              max_body, rate, shard, data, method, max_redirects = "10";
  std::vector<std::string> headers;
};

int serve_mock(std::uint16_t port, int seconds) {
  spindle::cli::mock_api api(port);
  std::printf("%u\n", static_cast<unsigned>(api.port()));
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  return 0;
}

int usage_error(const std::string& command, const std::string& msg) {
  std::fprintf(stderr, "spindle %s: %s\n", command.c_str(), msg.c_str());
  return exit_usage;
}

// Fills `o` from `raw`; an error message naming the option, or "".
std::string finish_fetch_options(const raw_fetch& raw, bool method_given, fetch_options& o) {
  auto count = [](const std::string& name, const std::string& text, std::uint64_t min, std::uint64_t& out) {
    std::size_t used = 0;
    try {
      out = std::stoull(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || text.front() == '-' || out < min)
      return name + ": bad number '" + text + "' (expected an integer >= " + std::to_string(min) + ")";
    return std::string();
  };
  std::uint64_t n = 0;
  if (auto e = count("--concurrency", raw.concurrency, 1, n); !e.empty()) return e;
  o.concurrency = n;
  if (!raw.per_host.empty()) {
    if (auto e = count("--per-host", raw.per_host, 1, n); !e.empty()) return e;
    o.per_host = n;
  }
  if (auto e = count("--retries", raw.retries, 0, n); !e.empty()) return e;
  if (n > 100) return "--retries: at most 100";
  o.retries = static_cast<unsigned>(n);
  if (auto e = count("--max-redirects", raw.max_redirects, 0, n); !e.empty()) return e;
  o.max_redirects = static_cast<int>(std::min<std::uint64_t>(n, 100));
  // Each option's parser; an invalid_argument becomes "NAME: why".
  const std::pair<const char*, std::function<void()>> parsers[] = {
      {"--timeout",
       [&] {
         o.timeout = parse_duration(raw.timeout);
         if (o.timeout <= spindle::duration::zero()) throw std::invalid_argument("must be more than zero");
       }},
      {"--deadline",
       [&] {
         if (!raw.deadline.empty()) o.deadline = parse_duration(raw.deadline);
       }},
      {"--backoff", [&] { o.backoff = parse_duration(raw.backoff); }},
      {"--max-body",
       [&] {
         if (!raw.max_body.empty()) o.max_body = parse_bytes(raw.max_body);
       }},
      {"--rate",
       [&] {
         if (!raw.rate.empty()) o.rate = parse_rate(raw.rate);
       }},
      {"--shard",
       [&] {
         if (raw.shard.empty()) return;
         const shard_spec s = parse_shard(raw.shard);
         o.shard_k = s.k;
         o.shard_n = s.n;
       }},
      {"--header",
       [&] {
         for (const auto& h : raw.headers) o.headers.push_back(parse_header(h));
       }},
  };
  for (const auto& [name, parse] : parsers) {
    try {
      parse();
    } catch (const std::invalid_argument& e) {
      return std::string(name) + ": " + e.what();
    }
  }
  if (!raw.data.empty()) {
    if (raw.data.front() == '@') {
      const std::string path = raw.data.substr(1);
      std::ifstream f(path, std::ios::binary);
      if (!f) return "--data @" + path + ": cannot read the file";
      o.data = std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    } else {
      o.data = raw.data;
    }
    if (!method_given) o.method = "POST";  // as curl -d
  }
  if (method_given) {
    o.method = raw.method;
    for (char& c : o.method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (o.method.empty() || o.method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ-") != std::string::npos)
      return "--method: bad method '" + raw.method + "'";
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "spindle: fetch many URLs concurrently, and see the asyncio traps spindle closes (spindle demo)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "spindle 0.1.0");

  // ---- fetch
  fetch_options fo;
  raw_fetch raw;
  bool progress = false, no_progress = false;
  CLI::App* fetch = app.add_subcommand("fetch", "Fetch URLs concurrently; one JSON Lines result per input");
  fetch->add_option("url", fo.urls, "URLs to fetch (before those of --urls)");
  fetch->add_option("--urls", fo.urls_file,
                    "File of URLs, one per line (- for stdin; blank lines and #comments skipped)");
  fetch->add_option("-c,--concurrency", raw.concurrency, "Requests in flight at most (default 64)");
  fetch->add_option("--per-host", raw.per_host, "Connections per origin at most (default: --concurrency)");
  fetch->add_option("-t,--timeout", raw.timeout, "Per attempt: connect, headers and body (default 10s)");
  fetch->add_option("--deadline", raw.deadline,
                    "For the whole run; what is unfinished then ends 'cancelled'");
  fetch->add_option("-r,--retries", raw.retries,
                    "Retries after connect errors, timeouts, 5xx and 429 (default 2)");
  fetch->add_option("--backoff", raw.backoff, "Base of the exponential backoff, full jitter (default 100ms)");
  fetch->add_option("-o,--out", fo.out, "Results file, JSON Lines (default stdout)");
  fetch->add_flag("--body", fo.body, "Put each response body in its result");
  fetch->add_option("--max-body", raw.max_body, "Largest response body accepted (default 64M)");
  fetch->add_option("-H,--header", raw.headers, "Request header 'Name: value' (repeatable)")
      ->allow_extra_args(false);
  auto* method_opt =
      fetch->add_option("-X,--method", raw.method, "HTTP method (default GET; POST with --data)");
  fetch->add_option("-d,--data", raw.data, "Request body: a string, or @FILE");
  fetch->add_flag("-k,--insecure", fo.insecure, "Do not verify TLS certificates");
  fetch->add_flag("--resume", fo.resume, "Skip inputs with a final result in --out; append the rest");
  fetch->add_flag("--progress", progress, "Progress bar on stderr (default: when stderr is a terminal)");
  fetch->add_flag("--no-progress", no_progress, "No progress bar");
  fetch->add_option("--rate", raw.rate, "Requests per second at most, e.g. 50/s or 600/m");
  fetch->add_flag("-q,--quiet", fo.quiet, "Only the summary's first line on stderr");
  fetch->add_option("--shard", raw.shard, "K/N: only inputs whose index mod N is K (indices stay global)");
  fetch->add_flag("--retry-unsafe", fo.retry_unsafe, "Retry non-idempotent methods (POST, PATCH) too");
  fetch->add_option("--max-redirects", raw.max_redirects, "Redirects followed at most (default 10; 0: none)");
  fetch->add_flag("--allow-insecure-redirects", fo.allow_insecure_redirects,
                  "Follow redirects from https:// to http:// (credentials are dropped all the same)");

  // ---- demo
  std::vector<std::string> scenes;
  bool list = false;
  CLI::App* demo = app.add_subcommand("demo", demo_description());
  demo->add_option("scene", scenes, "Scenes to run (default: all): " + demo_scene_names());
  demo->add_flag("--list", list, "List the scenes");
  demo->footer("Scenes:\n" + demo_scene_list());

  // ---- serve-mock (hidden: for benchmarks and manual tries)
  int mock_port = 0, mock_seconds = 60;
  CLI::App* serve = app.add_subcommand("serve-mock", "Serve the demo's mock API on 127.0.0.1 for a while");
  serve->group("");
  serve->add_option("--port", mock_port, "Port (0: ephemeral; the port is printed)");
  serve->add_option("--seconds", mock_seconds, "Stop after this long (default 60)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string which = "";
    for (auto* sub : app.get_subcommands()) which = sub->get_name();
    std::string msg = e.what();
    std::fprintf(stderr, "spindle%s%s: %s (see spindle %s--help)\n", which.empty() ? "" : " ", which.c_str(),
                 msg.c_str(), which.empty() ? "" : (which + " ").c_str());
    return exit_usage;
  }

  if (fetch->parsed()) {
    if (progress && no_progress) return usage_error("fetch", "--progress and --no-progress together");
    fo.progress = progress ? 1 : no_progress ? 0 : -1;
    if (std::string e = finish_fetch_options(raw, method_opt->count() > 0, fo); !e.empty())
      return usage_error("fetch", e);
    return run_fetch(fo);
  }
  if (serve->parsed()) return serve_mock(static_cast<std::uint16_t>(mock_port), mock_seconds);
  if (list) {
    std::fputs(demo_scene_list().c_str(), stdout);
    return 0;
  }
  return run_demo(scenes);
}
