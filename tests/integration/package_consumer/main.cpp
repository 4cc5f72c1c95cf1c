#include <spindle/spindle.hpp>

#include <cstdio>

spindle::task<int> twice(int x) {
  co_await spindle::yield();
  co_return 2 * x;
}

int main() {
  spindle::event_loop loop;
  int v = loop.run(twice(21));
  std::printf("consumer: %d\n", v);
  return v == 42 ? 0 : 1;
}
