#include "body_files.hpp"

#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "fetch.hpp"

namespace spindle::cli {

namespace {

constexpr std::size_t write_size = 256u << 10;  // bytes buffered before a write job

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::system_error(err, std::generic_category(), what);
}

// mkdir -p `path` (relative paths from the working directory).
void make_dirs(const std::string& path) {
  std::string sofar;
  std::size_t at = 0;
  while (at <= path.size()) {
    const std::size_t slash = path.find('/', at);
    sofar = path.substr(0, slash);
    at = slash == std::string::npos ? path.size() + 1 : slash + 1;
    if (sofar.empty()) continue;  // the root
    if (::mkdir(sofar.c_str(), 0777) != 0 && errno != EEXIST) fail("mkdir " + sofar, errno);
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, errno);
  if (!S_ISDIR(st.st_mode)) fail(path, ENOTDIR);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string url_basename(std::string_view url) {
  if (const auto at = url.find("://"); at != std::string_view::npos) url.remove_prefix(at + 3);
  url = url.substr(0, std::min(url.size(), url.find_first_of("?#")));
  const auto slash = url.find('/');
  std::string_view path = slash == std::string_view::npos ? std::string_view() : url.substr(slash);
  const auto last = path.rfind('/');
  std::string_view seg = last == std::string_view::npos ? std::string_view() : path.substr(last + 1);
  std::string name;
  for (std::size_t i = 0; i < seg.size(); ++i) {
    char c = seg[i];
    if (c == '%' && i + 2 < seg.size()) {
      const int hi = hex_value(seg[i + 1]), lo = hex_value(seg[i + 2]);
      if (hi >= 0 && lo >= 0) {
        c = static_cast<char>(hi * 16 + lo);
        i += 2;
      }
    }
    const auto u = static_cast<unsigned char>(c);
    name += (c == '/' || u < 0x20 || u == 0x7f) ? '_' : c;
  }
  if (name.empty() || name == "." || name == "..") name = "index.html";
  if (name.size() > 200) name.resize(200);
  return name;
}

name_template::name_template(std::string text) : text_(std::move(text)) {
  if (text_.empty()) throw std::invalid_argument("empty name");
  if (text_.front() == '/')
    throw std::invalid_argument("'" + text_ + "' is absolute: names are inside --output-dir");
  for (std::size_t at = 0; (at = text_.find('{', at)) != std::string::npos;) {
    const std::size_t end = text_.find('}', at);
    const std::string field = text_.substr(at, end == std::string::npos ? std::string::npos : end - at + 1);
    if (field != "{index}" && field != "{basename}" && field != "{host}" && field != "{shard}")
      throw std::invalid_argument("unknown field '" + field +
                                  "' (known: {index}, {basename}, {host}, {shard})");
    at = end;
  }
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = text_.find('/', start);
    const std::string seg =
        text_.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (seg == ".." || seg == ".") throw std::invalid_argument("'" + text_ + "': no '.' or '..' segments");
    if (seg.empty()) throw std::invalid_argument("'" + text_ + "': an empty path segment");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
}

std::string name_template::expand(std::uint64_t index, std::string_view url, std::uint64_t shard) const {
  std::string out;
  for (std::size_t i = 0; i < text_.size();) {
    auto field = [&](std::string_view f) { return std::string_view(text_).substr(i).starts_with(f); };
    if (field("{index}")) {
      out += std::to_string(index);
      i += 7;
    } else if (field("{basename}")) {
      out += url_basename(url);
      i += 10;
    } else if (field("{host}")) {
      std::string h = shard_host(url);
      for (char& c : h)
        if (c == '/' || c == '[' || c == ']' || c == ':' || static_cast<unsigned char>(c) < 0x20) c = '_';
      if (h.empty() || h == "." || h == "..")
        h.assign(1, '_');  // (not = "_": g++ 12 false -Wrestrict, GCC bug 105329)
      out += h;
      i += 6;
    } else if (field("{shard}")) {
      out += std::to_string(shard);
      i += 7;
    } else {
      out += text_[i++];
    }
  }
  return out;
}

struct body_files::shared {
  explicit shared(event_loop& loop) : pool(options(loop)) {}
  static thread_pool_options options(event_loop& loop) {
    thread_pool_options p;
    p.name = "fetch-files";
    p.threads = 2;
    p.queue_capacity = 1024;
    p.full = when_full::wait;
    p.abandon_grace = std::chrono::seconds(5);  // a write to a slow disk is waited for a while
    p.attach_to = &loop;
    return p;
  }
  thread_pool pool;
  std::string dir;
  std::optional<name_template> names;
  std::uint64_t shard = 0;
  // Names the temporaries; atomic because with --loops N every loop's
  // fetcher opens files through this one store (the pool answers each
  // job on the loop that awaited it).
  std::atomic<std::uint64_t> serial{0};
};

namespace {

// One attempt's file, shared with the jobs that write it (a job abandoned
// at exit still owns what it uses).
struct part_file {
  int fd = -1;
  std::string temp;  // the temporary's path
  ~part_file() {
    if (fd >= 0) ::close(fd);
  }
};

class body_file final : public http::fetch_body_target {
 public:
  body_file(std::shared_ptr<body_files::shared> s, std::string name)
      : s_(std::move(s)), name_(std::move(name)), file_(std::make_shared<part_file>()) {}
  ~body_file() override {
    if (file_->fd >= 0) {  // dropped without commit or discard
      ::close(std::exchange(file_->fd, -1));
      ::unlink(file_->temp.c_str());
    }
  }

  task<void> start(const http::response& head) override {
    keep_ = head.ok();
    if (!keep_) co_return;  // an error body is not saved
    auto f = file_;
    const std::string final_path = s_->dir + "/" + name_;
    char serial[64];
    std::snprintf(serial, sizeof serial, ".spindle-%ld-%llu.part", static_cast<long>(::getpid()),
                  static_cast<unsigned long long>(s_->serial.fetch_add(1, std::memory_order_relaxed) + 1));
    std::string temp = final_path.substr(0, final_path.rfind('/') + 1) + serial;
    auto opening = [f, temp, final_path] {
      const std::size_t slash = final_path.rfind('/');
      make_dirs(final_path.substr(0, slash));
      const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd < 0) fail("--output-dir: " + temp, errno);
      f->fd = fd;
      f->temp = temp;
    };
    auto job = run_blocking(s_->pool, job_name{"open body file"}, std::move(opening));
    co_await std::move(job);
  }

  task<void> write(std::string_view piece) override {
    if (!keep_) co_return;
    buf_.append(piece);
    if (buf_.size() >= write_size) co_await flush();
  }

  task<std::string> commit() override {
    if (!keep_) throw std::logic_error("commit of a body that was not saved");
    co_await flush();
    auto f = file_;
    const std::string first = s_->dir + "/" + name_;
    auto finishing = [f, first] {
      if (::close(std::exchange(f->fd, -1)) != 0) fail("--output-dir: " + f->temp, errno);
      // Never over an existing file: NAME, then NAME.1, NAME.2, ...
      for (int n = 0; n < 10000; ++n) {
        const std::string target = n == 0 ? first : first + "." + std::to_string(n);
        if (::link(f->temp.c_str(), target.c_str()) == 0) {
          ::unlink(f->temp.c_str());
          return target;
        }
        if ((errno == EPERM || errno == EOPNOTSUPP) &&
            ::renameat2(AT_FDCWD, f->temp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) == 0)
          return target;  // a file system without hard links (vfat)
        if (errno != EEXIST) fail("--output-dir: " + target, errno);
      }
      fail("--output-dir: " + first + ": 10000 files of that name already", EEXIST);
    };
    auto job = run_blocking(s_->pool, job_name{"save body file"}, std::move(finishing));
    std::string path = co_await std::move(job);
    keep_ = false;
    co_return path;
  }

  task<void> discard() override {
    if (file_->fd < 0 && file_->temp.empty()) co_return;
    auto f = file_;
    auto removing = [f] {
      if (f->fd >= 0) ::close(std::exchange(f->fd, -1));
      if (!f->temp.empty()) ::unlink(f->temp.c_str());
      f->temp.clear();
    };
    std::exception_ptr failure;
    try {
      auto job = run_blocking(s_->pool, job_name{"remove body file"}, std::move(removing));
      co_await std::move(job);
    } catch (...) {
      failure = std::current_exception();  // must not throw: the file is left (named .part)
    }
  }

 private:
  task<void> flush() {
    if (buf_.empty()) co_return;
    auto data = std::make_shared<std::string>(std::move(buf_));
    buf_.clear();
    auto f = file_;
    auto writing = [f, data] {
      std::size_t off = 0;
      while (off < data->size()) {
        const ssize_t n = ::write(f->fd, data->data() + off, data->size() - off);
        if (n < 0) {
          if (errno == EINTR) continue;
          fail("--output-dir: writing " + f->temp, errno);
        }
        off += static_cast<std::size_t>(n);
      }
    };
    auto job = run_blocking(s_->pool, job_name{"write body file"}, std::move(writing));
    co_await std::move(job);
  }

  std::shared_ptr<body_files::shared> s_;
  std::string name_;
  std::shared_ptr<part_file> file_;
  std::string buf_;
  bool keep_ = false;
};

}  // namespace

body_files::body_files(event_loop& loop, std::string dir, name_template names, std::uint64_t shard)
    : s_(std::make_shared<shared>(loop)) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  make_dirs(dir);
  s_->dir = std::move(dir);
  s_->names.emplace(std::move(names));
  s_->shard = shard;
}

std::unique_ptr<http::fetch_body_target> body_files::open(const http::fetch_input& input, unsigned) {
  return std::make_unique<body_file>(s_, s_->names->expand(input.index, input.url, s_->shard));
}

}  // namespace spindle::cli
