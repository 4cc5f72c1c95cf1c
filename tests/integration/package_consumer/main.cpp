#include <spindle/http/url.hpp>
#include <spindle/spindle.hpp>

#include <cstdio>

spindle::task<int> twice(int x) {
  co_await spindle::yield();
  co_return 2 * x;
}

int main() {
  spindle::event_loop loop;
  int v = loop.run(twice(21));
  // spindle::http (and through it spindle::net, OpenSSL, c-ares, zlib, llhttp) links too.
  const auto u = spindle::http::url::parse("https://example.com:8443/x");
  std::printf("consumer: %d\n", v);
  return v == 42 && u.port == 8443 ? 0 : 1;
}
