#include <grove/remote_term/http_fetcher.hpp>

#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>
#include <grove/remote_term/remote_term.hpp>

#include "../child_process.hpp"
#include "../temp_dir.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

using namespace std::chrono_literals;
using grove::awaitable;
using json = nlohmann::json;

namespace {

// (Path joins, not string concatenation: g++ 12 warns falsely about array
// bounds in the latter.)
std::string cert(const std::string& name) { return (std::filesystem::path(GROVE_SOURCE_ROOT) / "certs" / name).string(); }

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

/// tests/remote_term/http_server.py on 127.0.0.1, port 0, serving a
/// temporary directory; HTTPS with the test CA's server certificate when
/// asked.
struct http_server {
  explicit http_server(bool tls = false)
      : process(tls ? std::vector<std::string>{"python3", script(), "--root", files.path(), "--cert", cert("server.pem"),
                                               "--key", cert("server.key")}
                    : std::vector<std::string>{"python3", script(), "--root", files.path()}) {
    const std::string line = process.read_line();
    REQUIRE(line.starts_with("PORT "));
    port = line.substr(5);
    scheme = tls ? "https" : "http";
  }
  static std::string script() {
    return (std::filesystem::path(GROVE_SOURCE_ROOT) / "tests" / "remote_term" / "http_server.py").string();
  }
  std::string url(const std::string& path) const { return scheme + "://127.0.0.1:" + port + path; }
  void put(const std::string& name, const std::string& content) const { write_file(files.file(name), content); }

  test_support::temp_dir files{"grove-http"};
  test_support::child_process process;
  std::string port;
  std::string scheme;
};

/// The requests the server saw, fetched with the fetcher under test.
json requests_seen(grove::node& n, const http_server& server) {
  grove::remote_term_options<json> o;
  o.name = "requests";
  o.fetcher = grove::http_fetcher({.url = server.url("/_requests"), .conditional = false});
  grove::remote_term<json> log(std::move(o));
  json out;
  n.block_on([&](grove::node& node) -> awaitable<void> {
    co_await log.start(node);
    const grove::term_outcome loaded = co_await log.first_attempt(20s);
    REQUIRE(loaded.status == grove::term_status::updated);
    out = *log.get();
    co_await log.stop();
  });
  return out;
}

grove::remote_term_options<json> options_for(std::shared_ptr<grove::term_fetcher> f) {
  grove::remote_term_options<json> o;
  o.name = "config";
  o.fetcher = std::move(f);
  o.jitter = 0;
  o.retry_backoff = grove::backoff_policy::constant(1h); // attempts come from refresh() only
  return o;
}

/// One term, started (its first attempt), then refreshed until it made
/// `attempts` attempts; the outcomes in order.
struct run_result {
  std::vector<grove::term_outcome> outcomes;
  std::optional<json> value;
  grove::term_stats stats;
};

run_result run(grove::node& n, grove::remote_term_options<json> o, int attempts,
               const std::function<void(int)>& between = {}) {
  grove::remote_term<json> term(std::move(o));
  run_result r;
  n.block_on([&](grove::node& node) -> awaitable<void> {
    co_await term.start(node);
    r.outcomes.push_back(co_await term.first_attempt(30s));
    for (int i = 1; i < attempts; ++i) {
      if (between) between(i);
      r.outcomes.push_back(co_await term.refresh(30s));
    }
    if (auto v = term.get()) r.value = *v;
    r.stats = term.stats();
    co_await term.stop();
  });
  return r;
}

} // namespace

TEST_CASE("http: a 200 is loaded, then a conditional GET answered 304 is not modified, then a change is seen") {
  http_server server;
  server.put("a.json", R"({"v": 1})");
  grove::node n{{.threads = 2}};
  const auto r = run(n, options_for(grove::http_fetcher({.url = server.url("/files/a.json")})), 3, [&](int i) {
    if (i == 2) server.put("a.json", R"({"v": 2, "more": true})");
  });
  REQUIRE(r.outcomes.size() == 3);
  CHECK(r.outcomes[0].status == grove::term_status::updated);
  CHECK(r.outcomes[0].version.starts_with("\"")); // the ETag
  CHECK(r.outcomes[1].status == grove::term_status::not_modified);
  CHECK(r.outcomes[2].status == grove::term_status::updated);
  CHECK(r.outcomes[2].version != r.outcomes[0].version);
  REQUIRE(r.value);
  CHECK((*r.value)["v"] == 2);

  const json seen = requests_seen(n, server);
  REQUIRE(seen.size() == 3);
  CHECK(seen[0]["if_none_match"].is_null()); // nothing held yet
  CHECK(seen[1]["if_none_match"] == r.outcomes[0].version);
  CHECK(seen[1]["if_modified_since"].is_null()); // the ETag alone: no store may weigh the date against it
  CHECK(seen[0]["accept_encoding"] == "gzip");
}

TEST_CASE("http: Last-Modified alone drives If-Modified-Since; no validator at all compares the bytes") {
  http_server server;
  server.put("a.json", R"({"v": 1})");
  // Modified a minute before the responses' Date: a strong validator.
  std::filesystem::last_write_time(server.files.file("a.json"),
                                   std::filesystem::file_time_type::clock::now() - std::chrono::minutes(1));
  grove::node n{{.threads = 2}};
  const auto lm = run(n, options_for(grove::http_fetcher({.url = server.url("/files/a.json?validators=lm")})), 2);
  CHECK(lm.outcomes[0].status == grove::term_status::updated);
  CHECK(lm.outcomes[0].version.starts_with("last-modified "));
  CHECK(lm.outcomes[1].status == grove::term_status::not_modified);

  const auto none = run(n, options_for(grove::http_fetcher({.url = server.url("/files/a.json?validators=none")})), 2);
  CHECK(none.outcomes[0].status == grove::term_status::updated);
  CHECK(none.outcomes[0].version.starts_with("sha256:"));
  CHECK(none.outcomes[1].status == grove::term_status::not_modified); // a 200 with the same bytes

  const json seen = requests_seen(n, server);
  REQUIRE(seen.size() == 4);
  CHECK(seen[1]["if_modified_since"].is_string());
  CHECK(seen[1]["if_none_match"].is_null());
  CHECK(seen[3]["if_modified_since"].is_null()); // nothing to be conditional on
  CHECK(seen[3]["if_none_match"].is_null());
}

TEST_CASE("http: a Last-Modified not a second before the response's Date is weak: an edit within that second is seen") {
  http_server server;
  server.put("a.json", R"({"v": 1})");
  // Dated after the response (a clock ahead, or an edit in the second being
  // served): the next edit may keep this Last-Modified.
  const auto stamp = std::filesystem::file_time_type::clock::now() + std::chrono::seconds(30);
  std::filesystem::last_write_time(server.files.file("a.json"), stamp);
  grove::node n{{.threads = 2}};
  const auto r = run(n, options_for(grove::http_fetcher({.url = server.url("/files/a.json?validators=lm")})), 3, [&](int i) {
    if (i != 1) return;
    server.put("a.json", R"({"v": 2})");
    std::filesystem::last_write_time(server.files.file("a.json"), stamp); // the same second
  });
  REQUIRE(r.outcomes.size() == 3);
  CHECK(r.outcomes[0].status == grove::term_status::updated);
  CHECK(r.outcomes[0].version.starts_with("sha256:")); // not the Last-Modified
  CHECK(r.outcomes[1].status == grove::term_status::updated); // an If-Modified-Since would have got a 304
  CHECK(r.outcomes[2].status == grove::term_status::not_modified); // the same bytes again
  REQUIRE(r.value);
  CHECK((*r.value)["v"] == 2);
  const json seen = requests_seen(n, server);
  REQUIRE(seen.size() == 3);
  CHECK(seen[1]["if_modified_since"].is_null());
  CHECK(seen[2]["if_modified_since"].is_null());
}

TEST_CASE("http: a 404 fails naming the status and stores nothing; an S3-style error names its code") {
  http_server server;
  grove::node n{{.threads = 2}};
  const auto missing = run(n, options_for(grove::http_fetcher({.url = server.url("/files/none.json?token=secret")})), 1);
  CHECK(missing.outcomes[0].status == grove::term_status::failed);
  CHECK(missing.outcomes[0].error == grove::remote_term_errc::fetch_failed);
  CHECK(missing.outcomes[0].reason.find("status 404 Not Found") != std::string::npos);
  CHECK(missing.outcomes[0].reason.find("/files/none.json") != std::string::npos);
  CHECK(missing.outcomes[0].reason.find("secret") == std::string::npos); // the query stays out of logs
  CHECK_FALSE(missing.value);

  const auto denied = run(n, options_for(grove::http_fetcher({.url = server.url("/s3error")})), 1);
  CHECK(denied.outcomes[0].reason.find("status 403 Forbidden (AccessDenied)") != std::string::npos);
  const auto server_error = run(n, options_for(grove::http_fetcher({.url = server.url("/status/503")})), 1);
  CHECK(server_error.outcomes[0].reason.find("status 503") != std::string::npos);
}

TEST_CASE("http: redirects are followed up to max_redirects, relative and absolute; a loop is an error") {
  http_server server;
  server.put("a.json", R"({"v": 1})");
  grove::node n{{.threads = 2}};
  const auto three = run(n, options_for(grove::http_fetcher({.url = server.url("/redirect/3?to=/files/a.json")})), 2);
  CHECK(three.outcomes[0].status == grove::term_status::updated);
  CHECK(three.outcomes[1].status == grove::term_status::not_modified); // the 304 comes at the end of the chain
  REQUIRE(three.value);
  CHECK((*three.value)["v"] == 1);

  const auto absolute = run(n, options_for(grove::http_fetcher({.url = server.url("/redirect-abs?to=/files/a.json")})), 1);
  CHECK(absolute.outcomes[0].status == grove::term_status::updated);

  const auto too_many = run(
      n, options_for(grove::http_fetcher({.url = server.url("/redirect/3?to=/files/a.json"), .max_redirects = 2})), 1);
  CHECK(too_many.outcomes[0].status == grove::term_status::failed);
  CHECK(too_many.outcomes[0].reason.find("more than max_redirects (2) redirects") != std::string::npos);

  const auto loop = run(n, options_for(grove::http_fetcher({.url = server.url("/redirect-loop")})), 1);
  CHECK(loop.outcomes[0].reason.find("more than max_redirects (5)") != std::string::npos);
}

TEST_CASE("http: a body over max_bytes is refused, by its Content-Length or as it arrives") {
  http_server server;
  grove::node n{{.threads = 2}};
  auto o = options_for(grove::http_fetcher({.url = server.url("/big/2000000")}));
  o.max_bytes = 100000;
  const auto by_length = run(n, o, 1);
  CHECK(by_length.outcomes[0].error == grove::remote_term_errc::too_large);
  CHECK(by_length.outcomes[0].reason.find("Content-Length 2000000 bytes, over max_bytes (100000)") != std::string::npos);

  o.fetcher = grove::http_fetcher({.url = server.url("/chunked/2000000")});
  const auto streamed = run(n, o, 1);
  CHECK(streamed.outcomes[0].error == grove::remote_term_errc::too_large);
  CHECK(streamed.outcomes[0].reason.find("runs past max_bytes (100000)") != std::string::npos);

  o.fetcher = grove::http_fetcher({.url = server.url("/chunked/90000")}); // chunked, under the limit: fine
  o.deserialize = [](std::string_view bytes) { return json(bytes.size()); };
  const auto fits = run(n, o, 1);
  CHECK(fits.outcomes[0].status == grove::term_status::updated);
  REQUIRE(fits.value);
  CHECK(*fits.value == 90000);
}

TEST_CASE("http: a server that never answers fails the attempt at attempt_timeout; a stalled body at io_timeout") {
  http_server server;
  grove::node n{{.threads = 2}};
  auto o = options_for(grove::http_fetcher({.url = server.url("/hang")}));
  o.attempt_timeout = 300ms;
  const auto hung = run(n, o, 1);
  CHECK(hung.outcomes[0].error == grove::remote_term_errc::attempt_timeout);

  auto stalled_options = options_for(grove::http_fetcher({.url = server.url("/stall"), .io_timeout = 300ms}));
  const auto stalled = run(n, stalled_options, 1);
  CHECK(stalled.outcomes[0].error == grove::remote_term_errc::fetch_failed);
  CHECK(stalled.outcomes[0].reason.find("reading the body took over io_timeout (300 ms)") != std::string::npos);
}

TEST_CASE("http: a gzip response is inflated by the term; an encoding not asked for is refused") {
  http_server server;
  server.put("a.json", R"({"zipped": "yes"})");
  grove::node n{{.threads = 2}};
  const auto zipped = run(n, options_for(grove::http_fetcher({.url = server.url("/files/a.json?encoding=gzip")})), 1);
  CHECK(zipped.outcomes[0].status == grove::term_status::updated);
  REQUIRE(zipped.value);
  CHECK((*zipped.value)["zipped"] == "yes");

  auto raw = options_for(grove::http_fetcher({.url = server.url("/files/a.json"), .accept_gzip = false}));
  raw.decompress = false;
  const auto plain = run(n, raw, 1);
  CHECK(plain.outcomes[0].status == grove::term_status::updated);

  const auto brotli = run(n, options_for(grove::http_fetcher({.url = server.url("/encoding/br")})), 1);
  CHECK(brotli.outcomes[0].reason.find("Content-Encoding br (expected none or gzip)") != std::string::npos);

  const json seen = requests_seen(n, server);
  REQUIRE(seen.size() == 3);
  CHECK(seen[1]["accept_encoding"].is_null());
}

TEST_CASE("http: Cache-Control max-age minus Age sets the next attempt, never below the floor") {
  http_server server;
  server.put("a.json", "{}");
  grove::node n{{.threads = 2}};
  struct row {
    const char* query;
    std::optional<grove::duration> next;
  };
  const row table[] = {
      {"cc=max-age%3D120", 120s},                // max-age alone
      {"cc=public,%20MAX-AGE%3D60&age=20", 40s}, // anywhere in the list, any case, minus Age
      {"cc=max-age%3D60&age=100", 10s},          // Age above max-age: the floor
      {"cc=max-age%3D5", 10s},                   // below the floor: the floor
      {"cc=no-cache", 1h},                       // no max-age: the interval
      {"", 1h},                                  // no header: the interval
  };
  for (const row& r : table) {
    CAPTURE(r.query);
    auto o = options_for(grove::http_fetcher(
        {.url = server.url("/files/a.json?" + std::string(r.query)), .cache_control_floor = 10s}));
    o.interval = 1h;
    const auto result = run(n, o, 2);
    CHECK(result.outcomes[1].status == grove::term_status::not_modified);
    CHECK(result.stats.next_delay == r.next); // set by the 304, which carries the header too
  }
  // Without a floor the fetcher leaves Cache-Control alone.
  auto o = options_for(grove::http_fetcher({.url = server.url("/files/a.json?cc=max-age%3D120")}));
  o.interval = 1h;
  CHECK(run(n, o, 1).stats.next_delay == std::optional<grove::duration>(1h));
}

TEST_CASE("https: verified against the test CA; an unknown CA or a wrong name is refused with OpenSSL's reason") {
  http_server server(true);
  server.put("a.json", R"({"tls": true})");
  grove::node n{{.threads = 2}};
  const auto ok = run(
      n, options_for(grove::http_fetcher({.url = server.url("/files/a.json"), .tls = {.ca_file = cert("ca.pem")}})), 2);
  CHECK(ok.outcomes[0].status == grove::term_status::updated);
  CHECK(ok.outcomes[1].status == grove::term_status::not_modified);
  REQUIRE(ok.value);
  CHECK((*ok.value)["tls"] == true);

  const auto other_ca = run(
      n, options_for(grove::http_fetcher({.url = server.url("/files/a.json"), .tls = {.ca_file = cert("other-ca.pem")}})), 1);
  CHECK(other_ca.outcomes[0].status == grove::term_status::failed);
  CHECK(other_ca.outcomes[0].reason.find("TLS handshake failed") != std::string::npos);
  CHECK(other_ca.outcomes[0].reason.find("unable to get local issuer certificate") != std::string::npos);

  const auto wrong_name = run(n, options_for(grove::http_fetcher({.url = server.url("/files/a.json"),
                                                                  .tls = {.ca_file = cert("ca.pem"),
                                                                          .server_name = "config.example.org"}})),
                              1);
  CHECK(wrong_name.outcomes[0].reason.find("hostname mismatch") != std::string::npos);

  // An https URL that redirects to plain http is refused.
  const auto downgrade = run(n, options_for(grove::http_fetcher({.url = server.url("/redirect-to?url=http://127.0.0.1:" +
                                                                                   server.port + "/files/a.json"),
                                                                 .tls = {.ca_file = cert("ca.pem")}})),
                             1);
  CHECK(downgrade.outcomes[0].reason.find("redirect from https to http refused") != std::string::npos);
}

TEST_CASE("fallback: the next source serves when the primary fails; the primary is used again once it recovers") {
  http_server server;
  server.put("b.json", R"({"from": "b"})");
  grove::node n{{.threads = 2}};
  auto o = options_for(grove::fallback_fetcher({grove::http_fetcher({.url = server.url("/files/a.json")}),
                                                grove::http_fetcher({.url = server.url("/files/b.json")})}));
  grove::remote_term<json> term(std::move(o));
  n.block_on([&](grove::node& node) -> awaitable<void> {
    co_await term.start(node);
    grove::term_outcome first = co_await term.first_attempt(30s);
    CHECK(first.status == grove::term_status::updated);
    CHECK(first.version.starts_with("1:\""));
    CHECK((*term.get())["from"] == "b");
    grove::term_outcome again = co_await term.refresh(30s); // primary still 404; b answers 304
    CHECK(again.status == grove::term_status::not_modified);
    server.put("a.json", R"({"from": "a"})");
    grove::term_outcome back = co_await term.refresh(30s);
    CHECK(back.status == grove::term_status::updated);
    CHECK(back.version.starts_with("0:\""));
    CHECK((*term.get())["from"] == "a");
    co_await term.stop();
  });
  const json seen = requests_seen(n, server);
  REQUIRE(seen.size() == 5); // a, b, a, b (conditional), a
  CHECK(seen[2]["if_none_match"].is_null()); // a never gave the held value: asked unconditionally
  CHECK(seen[3]["if_none_match"].is_string());

  auto both_down = options_for(grove::fallback_fetcher({grove::http_fetcher({.url = server.url("/status/500")}),
                                                        grove::http_fetcher({.url = server.url("/status/502")})}));
  const auto down = run(n, both_down, 1);
  CHECK(down.outcomes[0].reason.find("every source failed") != std::string::npos);
  CHECK(down.outcomes[0].reason.find("status 500") != std::string::npos);
  CHECK(down.outcomes[0].reason.find("status 502") != std::string::npos);
}

TEST_CASE("http and s3 fetchers refuse bad options, naming the option") {
  CHECK_THROWS_WITH_AS((grove::http_fetcher({.url = "ftp://example.org/x"})),
                       doctest::Contains("http_fetcher: url: \"ftp://example.org/x\": scheme ftp is not http or https"),
                       grove::error);
  CHECK_THROWS_WITH_AS((grove::http_fetcher({.url = "http://user:pw@example.org/"})), doctest::Contains("user info"),
                       grove::error);
  CHECK_THROWS_WITH_AS((grove::http_fetcher({.url = "http://example.org:99999/"})),
                       doctest::Contains("port \"99999\" is not 1 to 65535"), grove::error);
  CHECK_THROWS_WITH_AS((grove::http_fetcher({.url = "http://example.org/", .headers = {{"X-A", "1\r\nX-B: 2"}}})),
                       doctest::Contains("http_fetcher: headers: \"X-A\""), grove::error);
  CHECK_THROWS_WITH_AS((grove::http_fetcher({.url = "http://example.org/", .max_redirects = -1})),
                       doctest::Contains("max_redirects: negative"), grove::error);
  CHECK_THROWS_WITH_AS((grove::http_fetcher({.url = "https://example.org/", .tls = {.ca_file = "/nonexistent/ca.pem"}})),
                       doctest::Contains("tls.ca_file \"/nonexistent/ca.pem\": cannot read the file"), grove::error);
  CHECK_THROWS_WITH_AS((grove::s3_fetcher({.key = "k"})), doctest::Contains("s3_fetcher: bucket: empty"), grove::error);
  CHECK_THROWS_WITH_AS((grove::s3_fetcher({.bucket = "b"})), doctest::Contains("s3_fetcher: key: empty"), grove::error);
  CHECK_THROWS_WITH_AS((grove::s3_fetcher({.bucket = "b", .key = "k", .endpoint = "http://127.0.0.1:1/x",
                                          .access_key_id = "a", .secret_access_key = "s"})),
                       doctest::Contains("endpoint: \"http://127.0.0.1:1/x\" has a path"), grove::error);
  CHECK_THROWS_WITH_AS((grove::fallback_fetcher({})), doctest::Contains("fallback_fetcher: sources: empty"), grove::error);
}
