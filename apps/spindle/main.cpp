// The `spindle` command: `spindle fetch` (the main job) and `spindle demo`.

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "body_files.hpp"
#include "demo.hpp"
#include "fetch.hpp"
#include "mock_api.hpp"
#include "parse.hpp"

#ifndef SPINDLE_VERSION
#define SPINDLE_VERSION "unknown"
#endif

namespace {

using namespace spindle::cli;

// The descriptors 0, 1 and 2 the program was started without.
struct closed_std_fds {
  bool in = false, out = false, err = false;
};

// Before anything else opens a descriptor: each of 0, 1, 2 that is closed
// gets /dev/null, so no socket, file or signalfd lands there (a signalfd on
// fd 1 would receive the results). Which ones were closed is returned, to
// report "stdout is closed" where it matters.
closed_std_fds reserve_std_fds() {
  closed_std_fds c;
  bool* closed[] = {&c.in, &c.out, &c.err};
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    *closed[fd] = true;
    // The lowest free descriptor: this one, as the lower ones are open by now.
    const int got = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (got > 2) ::close(got);
  }
  return c;
}

// The commands `spindle --help` lists (serve-mock is hidden).
const std::vector<std::string> commands = {"fetch", "demo"};

// "unknown command 'fecth'; did you mean 'fetch'?" when the first word that
// is not an option names no command; "" otherwise.
std::string unknown_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.starts_with('-')) continue;  // the top level's options take no value
    if (a == "serve-mock" || std::find(commands.begin(), commands.end(), a) != commands.end()) return {};
    const std::string near = closest_name(a, commands);
    return "unknown command '" + a + "'" +
           (near.empty() ? "; the commands are fetch and demo" : "; did you mean '" + near + "'?");
  }
  return {};
}

// "; did you mean '--concurrency'?" for an unexpected "--concurency" of `app`.
std::string option_hint(CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* o : app.get_options()) {
    for (const auto& l : o->get_lnames()) names.push_back(l);
  }
  for (const auto& extra : app.remaining()) {
    if (!extra.starts_with("--")) continue;
    const std::string typed = extra.substr(2, extra.find('=') - 2);
    if (const std::string near = closest_name(typed, names); !near.empty())
      return "; did you mean '--" + near + "'?";
  }
  return {};
}

// The option values as typed, parsed after CLI11 so each error names its option.
struct raw_fetch {
  std::string concurrency = "64", per_host, timeout = "10s", deadline, retries = "2", backoff = "100ms",
              max_body, rate, shard, shard_count, shard_by = "index", data, method, max_redirects = "10",
              loops = "1";
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
  if (auto e = count("--loops", raw.loops, 1, n); !e.empty()) return e;
  if (n > max_fetch_loops) return "--loops: at most " + std::to_string(max_fetch_loops);
  o.loops = static_cast<std::size_t>(n);
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
         if (!raw.shard_count.empty() && raw.shard != "auto")
           throw std::invalid_argument("--shard-count goes with --shard auto");
         if (raw.shard_by != "index" && raw.shard_by != "host")
           throw std::invalid_argument("--shard-by " + raw.shard_by + ": index or host");
         o.shard_by_host = raw.shard_by == "host";
         if (raw.shard.empty()) return;
         std::optional<std::uint64_t> shards;
         if (!raw.shard_count.empty()) {
           std::uint64_t given = 0;
           const auto [end, ec] = std::from_chars(raw.shard_count.data(),
                                                  raw.shard_count.data() + raw.shard_count.size(), given);
           if (ec != std::errc{} || end != raw.shard_count.data() + raw.shard_count.size() || given == 0)
             throw std::invalid_argument("--shard-count " + raw.shard_count + ": a count of 1 or more");
           shards = given;
         }
         const shard_spec s = raw.shard == "auto" ? shard_from_environment(
                                                        shards, [](const char* v) { return std::getenv(v); })
                                                  : parse_shard(raw.shard);
         o.shard_k = s.k;
         o.shard_n = s.n;
         // "{shard}" in --out: this shard's index (one results file per shard).
         for (std::size_t at; (at = o.out.find("{shard}")) != std::string::npos;)
           o.out.replace(at, 7, std::to_string(s.k));
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
  if (!o.name_template.empty()) {
    if (o.output_dir.empty()) return "--name goes with --output-dir";
    try {
      (void)name_template(o.name_template);
    } catch (const std::invalid_argument& e) {
      return "--name: " + std::string(e.what());
    }
  }
  if (!o.output_dir.empty()) {
    if (o.body) return "--body and --output-dir together: the bodies go to the files";
    // Bodies on disk are not held in memory: no size limit unless asked.
    if (raw.max_body.empty()) o.max_body = std::uint64_t{1} << 50;
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
  const closed_std_fds closed = reserve_std_fds();  // first: before any descriptor is opened

  CLI::App app{
      "spindle: fetch many URLs concurrently, and see the asyncio traps spindle closes (spindle demo).",
      "spindle"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "spindle " SPINDLE_VERSION);

  // ---- fetch
  fetch_options fo;
  raw_fetch raw;
  bool progress = false, no_progress = false;
  CLI::App* fetch = app.add_subcommand("fetch", "Fetch URLs concurrently; one JSON Lines result per input");
  fetch->add_option("url", fo.urls, "URLs to fetch (before those of --urls)")->type_name("URL");
  fetch
      ->add_option("--urls", fo.urls_file,
                   "File of URLs, one per line (- for stdin; blank lines and #comments skipped)")
      ->type_name("FILE");
  fetch->add_option("-c,--concurrency", raw.concurrency, "Requests in flight at most (default 64)")
      ->type_name("N");
  fetch
      ->add_option("--loops", raw.loops,
                   "Event loops (threads) fetching, 1 to " + std::to_string(max_fetch_loops) +
                       " (default 1); --concurrency, --per-host and --rate stay totals")
      ->type_name("N");
  fetch->add_option("--per-host", raw.per_host, "Connections per origin at most (default: --concurrency)")
      ->type_name("N");
  fetch->add_option("-t,--timeout", raw.timeout, "Per attempt: connect, headers and body (default 10s)")
      ->type_name("DUR");
  fetch->add_option("--deadline", raw.deadline, "For the whole run; what is unfinished then ends 'cancelled'")
      ->type_name("DUR");
  fetch
      ->add_option("-r,--retries", raw.retries,
                   "Retries after connect errors, timeouts, 5xx and 429 (default 2)")
      ->type_name("N");
  fetch->add_option("--backoff", raw.backoff, "Base of the exponential backoff, full jitter (default 100ms)")
      ->type_name("DUR");
  fetch->add_option("-o,--out", fo.out, "Results file, JSON Lines (default stdout)")->type_name("FILE");
  fetch->add_flag("--body", fo.body, "Put each response body in its result");
  fetch
      ->add_option("--output-dir", fo.output_dir,
                   "Save each ok body to a file in DIR (streamed; the result's \"path\" names it)")
      ->type_name("DIR");
  fetch
      ->add_option("--name", fo.name_template,
                   "File name in --output-dir: {index} (default), {basename}, {host}, {shard}; e.g. "
                   "'{index}-{basename}'")
      ->type_name("TEMPLATE");
  fetch->add_flag("--ordered", fo.ordered,
                  "Results in input order (a bounded reorder buffer: a slow input holds the others back)");
  fetch->add_flag("-i,--include-headers", fo.include_headers,
                  "Put each response's header fields in its result, in order");
  fetch->add_option("--max-body", raw.max_body, "Largest response body accepted (default 64M)")
      ->type_name("SIZE");
  fetch->add_option("-H,--header", raw.headers, "Request header 'Name: value' (repeatable)")
      ->type_name("'NAME: VALUE'")
      ->allow_extra_args(false);
  auto* method_opt =
      fetch->add_option("-X,--method", raw.method, "HTTP method (default GET; POST with --data)")
          ->type_name("METHOD");
  fetch->add_option("-d,--data", raw.data, "Request body: a string, or @FILE")->type_name("DATA");
  fetch->add_flag("-k,--insecure", fo.insecure, "Do not verify TLS certificates");
  fetch->add_option("--cacert", fo.cacert, "Trust the CAs of this PEM file instead of the system store")
      ->type_name("FILE");
  fetch->add_option("--capath", fo.capath, "Trust the CAs of this directory (openssl rehash) instead")
      ->type_name("DIR");
  fetch->add_option("--cert", fo.cert, "Client certificate (PEM) for servers that ask for one")
      ->type_name("FILE");
  fetch->add_option("--key", fo.key, "Private key of --cert (PEM; default: in the --cert file)")
      ->type_name("FILE");
  fetch
      ->add_option("-u,--user", fo.user,
                   "Basic credentials, sent to the inputs' own origins only (never across a redirect)")
      ->type_name("USER:PASSWORD");
  fetch->add_flag("--resume", fo.resume, "Skip inputs with a final result in --out; append the rest");
  fetch->add_flag("--progress", progress, "Progress bar on stderr (default: when stderr is a terminal)");
  fetch->add_flag("--no-progress", no_progress, "No progress bar");
  fetch->add_option("--rate", raw.rate, "Requests per second at most, e.g. 50/s or 600/m")->type_name("RATE");
  fetch->add_flag("-q,--quiet", fo.quiet, "Only the summary's first line on stderr");
  fetch
      ->add_option("--shard", raw.shard,
                   "Only inputs whose index mod N is K (indices stay global); auto: from the batch engine's "
                   "array variables (Kubernetes, Slurm, AWS Batch)")
      ->type_name("K/N|auto");
  fetch
      ->add_option("--shard-by", raw.shard_by,
                   "index: input K of every N (default); host: all inputs of a host in one shard, so "
                   "--per-host and --rate hold across machines")
      ->type_name("index|host");
  fetch->add_option("--shard-count", raw.shard_count, "With --shard auto: the number of shards (Kubernetes)")
      ->type_name("N");
  fetch->add_flag("--retry-unsafe", fo.retry_unsafe, "Retry non-idempotent methods (POST, PATCH) too");
  fetch->add_option("--max-redirects", raw.max_redirects, "Redirects followed at most (default 10; 0: none)")
      ->type_name("N");
  fetch->add_flag("--allow-insecure-redirects", fo.allow_insecure_redirects,
                  "Follow redirects from https:// to http:// (credentials are dropped all the same)");

  // ---- demo
  std::vector<std::string> scenes;
  bool list = false;
  CLI::App* demo = app.add_subcommand("demo", demo_description());
  demo->add_option("scene", scenes, "Scenes to run (default: all): " + demo_scene_names())
      ->type_name("SCENE");
  demo->add_flag("--list", list, "List the scenes");
  demo->footer("Scenes:\n" + demo_scene_list());

  // ---- serve-mock (hidden: for benchmarks and manual tries)
  int mock_port = 0, mock_seconds = 60;
  CLI::App* serve = app.add_subcommand("serve-mock", "Serve the demo's mock API on 127.0.0.1 for a while");
  serve->group("");
  serve->add_option("--port", mock_port, "Port (0: ephemeral; the port is printed)")->type_name("PORT");
  serve->add_option("--seconds", mock_seconds, "Stop after this long (default 60)")->type_name("N");

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
    CLI::App* where = &app;
    for (auto* sub : app.get_subcommands()) {
      which = sub->get_name();
      where = sub;
    }
    std::string msg = e.what();
    if (which.empty()) {
      if (std::string u = unknown_command(argc, argv); !u.empty()) {
        msg = u;
      } else if (app.remaining().empty()) {
        msg = "a command is required: fetch or demo";
      } else {
        msg = "unknown option '" + app.remaining().front() + "'";
      }
    }
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) msg += option_hint(*where);
    std::fprintf(stderr, "spindle%s%s: %s (see spindle %s--help)\n", which.empty() ? "" : " ", which.c_str(),
                 msg.c_str(), which.empty() ? "" : (which + " ").c_str());
    return exit_usage;
  }

  if (fetch->parsed()) {
    if (closed.out && (fo.out.empty() || fo.out == "-"))
      return usage_error("fetch", "stdout is closed: nowhere to write the results (give --out FILE)");
    if (closed.in && fo.urls_file == "-") return usage_error("fetch", "--urls -: stdin is closed");
    if (progress && no_progress) return usage_error("fetch", "--progress and --no-progress together");
    fo.progress = progress ? 1 : no_progress ? 0 : -1;
    if (std::string e = finish_fetch_options(raw, method_opt->count() > 0, fo); !e.empty())
      return usage_error("fetch", e);
    return run_fetch(fo);
  }
  if (closed.out)
    return usage_error(serve->parsed() ? "serve-mock" : "demo", "stdout is closed: nowhere to write");
  if (serve->parsed()) return serve_mock(static_cast<std::uint16_t>(mock_port), mock_seconds);
  if (list) {
    std::fputs(demo_scene_list().c_str(), stdout);
    return 0;
  }
  return run_demo(scenes);
}
