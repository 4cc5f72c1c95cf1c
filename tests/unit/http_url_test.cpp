#include "spindle/http/url.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace spindle::http {
namespace {

// The invalid_url_error message for `fn`, or "no error".
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const invalid_url_error& e) {
    EXPECT_STREQ(e.kind(), "invalid_url");
    return e.what();
  }
  return "no error";
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// RFC 3986 §5.4: every example that is an http URL. The RFC keeps the
// fragment; a request target has none, so the expected values drop it.
const char* const rfc_base = "http://a/b/c/d;p?q";

TEST(UrlResolve, Rfc3986NormalExamples) {
  const url base = url::parse(rfc_base);
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"g", "http://a/b/c/g"},       {"./g", "http://a/b/c/g"},
      {"g/", "http://a/b/c/g/"},     {"/g", "http://a/g"},
      {"//g", "http://g/"},  // the RFC's "http://g": an http target is "/" at least
      {"?y", "http://a/b/c/d;p?y"},  {"g?y", "http://a/b/c/g?y"},
      {"#s", "http://a/b/c/d;p?q"},  {"g#s", "http://a/b/c/g"},
      {"g?y#s", "http://a/b/c/g?y"}, {";x", "http://a/b/c/;x"},
      {"g;x", "http://a/b/c/g;x"},   {"g;x?y#s", "http://a/b/c/g;x?y"},
      {"", "http://a/b/c/d;p?q"},    {".", "http://a/b/c/"},
      {"./", "http://a/b/c/"},       {"..", "http://a/b/"},
      {"../", "http://a/b/"},        {"../g", "http://a/b/g"},
      {"../..", "http://a/"},        {"../../", "http://a/"},
      {"../../g", "http://a/g"},
  };
  for (const auto& [ref, want] : cases) EXPECT_EQ(base.resolve(ref).to_string(), want) << "'" << ref << "'";
  // "g:h" is an absolute URL of a scheme an HTTP client cannot follow.
  EXPECT_TRUE(contains(error_of([&] { (void)base.resolve("g:h"); }), "unsupported scheme 'g'"));
}

TEST(UrlResolve, Rfc3986AbnormalExamples) {
  const url base = url::parse(rfc_base);
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"../../../g", "http://a/g"},
      {"../../../../g", "http://a/g"},
      {"/./g", "http://a/g"},
      {"/../g", "http://a/g"},
      {"g.", "http://a/b/c/g."},
      {".g", "http://a/b/c/.g"},
      {"g..", "http://a/b/c/g.."},
      {"..g", "http://a/b/c/..g"},
      {"./../g", "http://a/b/g"},
      {"./g/.", "http://a/b/c/g/"},
      {"g/./h", "http://a/b/c/g/h"},
      {"g/../h", "http://a/b/c/h"},
      {"g;x=1/./y", "http://a/b/c/g;x=1/y"},
      {"g;x=1/../y", "http://a/b/c/y"},
      {"g?y/./x", "http://a/b/c/g?y/./x"},
      {"g?y/../x", "http://a/b/c/g?y/../x"},
      {"g#s/./x", "http://a/b/c/g"},
      {"g#s/../x", "http://a/b/c/g"},
      {"http:g", "http://a/b/c/g"},  // §5.2.2's choice "for backward compatibility"
  };
  for (const auto& [ref, want] : cases) EXPECT_EQ(base.resolve(ref).to_string(), want) << "'" << ref << "'";
}

TEST(UrlResolve, SchemeOnlyBeforeSlashQueryOrHash) {
  const url base = url::parse("https://a.test/dir/page?x");
  EXPECT_EQ(base.resolve("/capture?next=http://example.com/").to_string(),
            "https://a.test/capture?next=http://example.com/");
  EXPECT_EQ(base.resolve("a/b?u=http://x").to_string(), "https://a.test/dir/a/b?u=http://x");
  EXPECT_EQ(base.resolve("p#http://x").to_string(), "https://a.test/dir/p");
  EXPECT_EQ(base.resolve("1http://x/").to_string(), "https://a.test/dir/1http://x/");
  EXPECT_EQ(base.resolve("HTTPS://B.test/y").to_string(), "https://b.test/y");
}

TEST(UrlResolve, AbsoluteSchemeRelativeAndQueryOnly) {
  const url base = url::parse("https://user:pw@a.test:8443/dir/page?x#frag");
  const url abs = base.resolve("http://c.test:8080/one/../two/./q?k=../v#f");
  EXPECT_EQ(abs.to_string(), "http://c.test:8080/two/q?k=../v");
  EXPECT_EQ(abs.target, "/two/q?k=../v");
  EXPECT_EQ(abs.userinfo, "");  // an absolute reference carries its own (none)
  const url other = base.resolve("//B.Test:81");
  EXPECT_EQ(other.scheme, "https");
  EXPECT_EQ(other.host, "b.test");
  EXPECT_EQ(other.port, 81);
  EXPECT_EQ(other.target, "/");
  EXPECT_EQ(other.userinfo, "");
  EXPECT_EQ(base.resolve("//u2@b.test/p").userinfo, "u2");
  EXPECT_EQ(base.resolve("//[::1]:8080?v").to_string(), "https://[::1]:8080/?v");
  const url query = base.resolve("?q=1");
  EXPECT_EQ(query.to_string(), "https://a.test:8443/dir/page?q=1");
  EXPECT_EQ(query.userinfo, "user:pw");  // same origin: the base's credentials
  EXPECT_EQ(base.resolve("").to_string(), "https://a.test:8443/dir/page?x");
  EXPECT_EQ(base.resolve("#only").to_string(), "https://a.test:8443/dir/page?x");
  EXPECT_EQ(base.resolve("/a/../b").target, "/b");
  EXPECT_EQ(base.resolve("../x").target, "/x");
  EXPECT_EQ(base.resolve("./y").target, "/dir/y");
  EXPECT_EQ(base.resolve(".").target, "/dir/");
  EXPECT_EQ(base.resolve("/").target, "/");
  EXPECT_EQ(base.resolve("https:g").target, "/dir/g");  // same scheme: relative
  EXPECT_TRUE(contains(error_of([&] { (void)base.resolve("http:g"); }), "expected '//'"));
  EXPECT_TRUE(contains(error_of([&] { (void)base.resolve("//"); }), "empty host"));
  EXPECT_TRUE(contains(error_of([&] { (void)base.resolve("//h:99999/"); }), "bad port"));
}

TEST(UrlResolve, SpacesAndUtf8AreEncodedControlCharactersRefused) {
  const url base = url::parse("http://a.test/dir/page");
  EXPECT_EQ(base.resolve("/a b?c d").target, "/a%20b?c%20d");
  EXPECT_EQ(base.resolve("caf\xc3\xa9 x").target, "/dir/caf%C3%A9%20x");
  EXPECT_EQ(base.resolve("https://b.test/\xc3\xbc?q=\xc3\xbc").to_string(), "https://b.test/%C3%BC?q=%C3%BC");
  EXPECT_EQ(base.resolve("//b.test/a b").target, "/a%20b");
  EXPECT_EQ(base.resolve("/already%20encoded").target, "/already%20encoded");
  for (const char* bad : {"/a\tb", "/a\nb", "/a\rb", "/a\x7f", "/x?\x01"}) {
    EXPECT_TRUE(contains(error_of([&] { (void)base.resolve(bad); }), "control character")) << bad;
  }
  EXPECT_TRUE(contains(error_of([&] { (void)base.resolve("http://a b/"); }), "space"));
}

TEST(UrlResolve, OtherSchemesAreRefused) {
  const url base = url::parse("http://a.test/");
  EXPECT_TRUE(
      contains(error_of([&] { (void)base.resolve("ftp://files.test/x"); }), "unsupported scheme 'ftp'"));
  EXPECT_TRUE(contains(error_of([&] { (void)base.resolve("JavaScript:alert(1)"); }),
                       "unsupported scheme 'javascript'"));
  EXPECT_TRUE(contains(error_of([&] { (void)base.resolve("mailto:x@y"); }), "unsupported scheme 'mailto'"));
}

TEST(UrlIdn, NonAsciiHostsBecomeALabels) {
  const url u = url::parse(
      "http://b\xc3\xbc"
      "cher.localhost/");
  EXPECT_EQ(u.host, "xn--bcher-kva.localhost");
  EXPECT_EQ(u.to_string(), "http://xn--bcher-kva.localhost/");
  // IDNA mapping lower-cases the non-ASCII Ü and the ASCII around it.
  EXPECT_EQ(url::parse("http://B\xc3\x9c"
                       "CHER.Localhost:8080/P%C3%BC?\xc3\xbc")
                .host,
            "xn--bcher-kva.localhost");
  EXPECT_EQ(url::parse("http://B\xc3\x9c"
                       "CHER.Localhost:8080/P?\xc3\xbc")
                .target,
            "/P?\xc3\xbc");  // as is
  // Non-transitional first ("ß" stays), transitional when that refuses (ZWJ).
  EXPECT_EQ(url::parse("https://fa\xc3\x9f.test/").host, "xn--fa-hia.test");
  EXPECT_EQ(url::parse("https://a\xe2\x80\x8d"
                       "b.test/")
                .host,
            "ab.test");
  EXPECT_EQ(url::parse("http://user:pw@b\xc3\xbc"
                       "cher.localhost/")
                .userinfo,
            "user:pw");
  EXPECT_EQ(url::parse("http://caf%C3%A9.test/").host, "caf%c3%a9.test");  // not decoded
  EXPECT_EQ(url::parse("http://EXAMPLE.com/").host, "example.com");
  const url base = url::parse("http://a.test/");
  EXPECT_EQ(base.resolve("//b\xc3\xbc"
                         "cher.localhost/x")
                .host,
            "xn--bcher-kva.localhost");
}

TEST(UrlIdn, HostsIdnaRefusesAreInvalid) {
  const std::string leading_mark = error_of([] { (void)url::parse("http://\xcc\x81x.localhost/"); });
  EXPECT_TRUE(contains(leading_mark, "\xcc\x81x.localhost")) << leading_mark;
  EXPECT_TRUE(contains(leading_mark, "combining")) << leading_mark;  // idn2_strerror's reason
  EXPECT_TRUE(contains(error_of([] { (void)url::parse("http://a\xff.test/"); }), "encoding")) << "bad UTF-8";
  EXPECT_TRUE(contains(error_of([] { (void)url::parse("http://-\xc3\xbc.test/"); }), "hyphen"));
  EXPECT_TRUE(contains(error_of([] { (void)url::parse("http://a<\xc3\xbc.test/"); }), "host"));
}

TEST(UrlCredentials, BasicAuthorizationFromUserinfo) {
  EXPECT_EQ(url::parse("http://Aladdin:open%20sesame@h/").basic_authorization(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
  EXPECT_EQ(url::parse("http://user:pass@h/").basic_authorization(), "Basic dXNlcjpwYXNz");
  // "a@b" / "p:w" decoded; the split is at the first literal ':'.
  EXPECT_EQ(url::parse("http://a%40b:p%3Aw@h/").basic_authorization(), "Basic YUBiOnA6dw==");
  EXPECT_EQ(url::parse("http://u%3Ax:pw@h/").basic_authorization(), "Basic dTp4OnB3");  // "u:x:pw"
  EXPECT_EQ(url::parse("http://user@h/").basic_authorization(), "Basic dXNlcjo=");      // "user:"
  EXPECT_EQ(url::parse("http://user:@h/").basic_authorization(), "Basic dXNlcjo=");
  EXPECT_EQ(url::parse("http://:pw@h/").basic_authorization(), "Basic OnB3");  // ":pw"
  EXPECT_EQ(url::parse("http://@h/").basic_authorization(), std::nullopt);
  EXPECT_EQ(url::parse("http://h/").basic_authorization(), std::nullopt);
}

TEST(UrlCredentials, PercentDecode) {
  EXPECT_EQ(percent_decode("a%20b%2fc%2Fd"), "a b/c/d");
  EXPECT_EQ(percent_decode("%C3%BC"), "\xc3\xbc");
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("%4"), "%4");
  EXPECT_EQ(percent_decode("%zz%4g%%41"), "%zz%4g%A");
  EXPECT_EQ(percent_decode("%00"), std::string(1, '\0'));
  EXPECT_EQ(percent_decode(""), "");
}

TEST(UrlCredentials, NeitherToStringNorOriginShowsUserinfo) {
  const url u = url::parse("https://user:secret@example.com:8443/p?q");
  EXPECT_EQ(u.userinfo, "user:secret");
  EXPECT_EQ(u.to_string(), "https://example.com:8443/p?q");
  EXPECT_EQ(u.origin(), "https://example.com:8443");
  EXPECT_EQ(u.host_header(), "example.com:8443");
}

TEST(UrlCredentials, ErrorMessagesHideThePassword) {
  const std::string port = error_of([] { (void)url::parse("http://user:s3cret@h:99999/"); });
  EXPECT_TRUE(contains(port, "'http://user:***@h:99999/'")) << port;
  EXPECT_FALSE(contains(port, "s3cret")) << port;
  const std::string host = error_of([] { (void)url::parse("https://me:p@ss:w@h<x>/a?b@c"); });
  EXPECT_TRUE(contains(host, "'https://me:***@h<x>/a?b@c'")) << host;
  EXPECT_FALSE(contains(host, "p@ss")) << host;
  const std::string space = error_of([] { (void)url::parse("http://u:pw@h/a b"); });
  EXPECT_TRUE(contains(space, "'http://u:***@h/a b'")) << space;
  // Without a password there is nothing to hide; a '@' in the path is not userinfo.
  EXPECT_TRUE(contains(error_of([] { (void)url::parse("http://u@h:0/"); }), "'http://u@h:0/'"));
  EXPECT_TRUE(contains(error_of([] { (void)url::parse("http://h:0/x:y@z"); }), "'http://h:0/x:y@z'"));
  const url base = url::parse("http://a.test/");
  const std::string resolved = error_of([&] { (void)base.resolve("//user:s3cret@h:0/"); });
  EXPECT_FALSE(contains(resolved, "s3cret")) << resolved;
}

}  // namespace
}  // namespace spindle::http
