#include <grove/remote_term/http_fetcher.hpp>

#include <grove/core/node.hpp>
#include <grove/remote_term/remote_term.hpp>

#include "../child_process.hpp"
#include "../readme_check.hpp"
#include "../temp_dir.hpp"
#include "gzip.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

using namespace std::chrono_literals;
using grove::awaitable;
using json = nlohmann::json;
using test_support::gzip;

namespace {

/// s3rver (a real S3-compatible server; scripts/test installs it under
/// .cache/s3rver) on 127.0.0.1, port 0, in a temporary directory, with the
/// buckets "prices" and "prices-replica". It checks a request's form (key id,
/// date, x-amz-content-sha256), not its SigV4 signature: the signature is
/// checked against AWS's published examples in http_rules_test.
struct s3_server {
  s3_server()
      : process({binary(), "--silent", "-d", data.path(), "-a", "127.0.0.1", "-p", "0", "--configure-bucket", "prices",
                 "--configure-bucket", "prices-replica"}) {
    const std::string line = process.wait_for("S3rver listening on 127.0.0.1:");
    port = line.substr(line.rfind(':') + 1);
  }
  static std::string binary() {
    const std::filesystem::path p =
        std::filesystem::path(GROVE_SOURCE_ROOT) / ".cache" / "s3rver" / "node_modules" / ".bin" / "s3rver";
    REQUIRE_MESSAGE(std::filesystem::exists(p),
                    "s3rver is not installed: scripts/test installs it (grove_install_s3rver in scripts/deps.sh)");
    return p.string();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + port; }

  /// Uploads with curl's own SigV4 signer (a second implementation).
  void put(const std::string& bucket, const std::string& key, const std::string& content) const {
    const std::string file = scratch.file("upload");
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out << content;
    }
    const int rc = test_support::child_process::run(
        {"curl", "-sS", "-f", "-o", "/dev/null", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "S3RVER:S3RVER", "-H",
         "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-T", file, endpoint() + "/" + bucket + "/" + key});
    REQUIRE(rc == 0);
  }

  grove::s3_fetcher_options options(const std::string& bucket, const std::string& key) const {
    return {.bucket = bucket, .key = key, .region = "us-east-1", .endpoint = endpoint(),
            .access_key_id = "S3RVER", .secret_access_key = "S3RVER"};
  }

  test_support::temp_dir data{"grove-s3"};
  test_support::temp_dir scratch{"grove-s3-upload"};
  test_support::child_process process;
  std::string port;
};


grove::remote_term_options<json> options_for(std::shared_ptr<grove::term_fetcher> f) {
  grove::remote_term_options<json> o;
  o.name = "prices";
  o.fetcher = std::move(f);
  o.retry_backoff = grove::backoff_policy::constant(1h); // attempts come from refresh() only
  return o;
}

/// The first attempt's outcome of a term on `f`, and its value.
std::pair<grove::term_outcome, std::optional<json>> load_once(grove::node& n, std::shared_ptr<grove::term_fetcher> f) {
  grove::remote_term<json> term(options_for(std::move(f)));
  std::pair<grove::term_outcome, std::optional<json>> out;
  n.block_on([&](grove::node& node) -> awaitable<void> {
    co_await term.start(node);
    out.first = co_await term.first_attempt(30s);
    if (auto v = term.get()) out.second = *v;
    co_await term.stop();
  });
  return out;
}

// --- README example begins
/// Prices from S3 (credentials and region from the AWS_* environment),
/// from a replica bucket while the primary fails, every 5 minutes;
/// start() returns once the first attempt is over.
grove::remote_term_options<nlohmann::json> price_options(const std::string& endpoint) {
  grove::s3_fetcher_options primary{.bucket = "prices", .key = "eu/table.json.gz", .endpoint = endpoint};
  grove::s3_fetcher_options replica = primary;
  replica.bucket = "prices-replica";
  grove::remote_term_options<nlohmann::json> options;
  options.name = "prices";
  options.fetcher = grove::fallback_fetcher({grove::s3_fetcher(primary), grove::s3_fetcher(replica)});
  options.interval = std::chrono::minutes(5);
  options.sync_first_load = true;
  return options;
}
// --- README example ends

} // namespace

TEST_CASE("the_readme_example_loads_prices_from_the_replica_bucket") {
  s3_server s3;
  s3.put("prices-replica", "eu/table.json.gz", gzip(R"({"eur": 1.0})"));
  ::setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
  grove::remote_term<json> prices(price_options(s3.endpoint()));
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  grove::node n{{.threads = 2}};
  n.block_on([&](grove::node& node) -> awaitable<void> {
    co_await prices.start(node);
    REQUIRE(prices.get());
    CHECK((*prices.get())["eur"] == 1.0);
    CHECK(prices.get().version().starts_with("1:")); // from the replica
    co_await prices.stop();
  });
  CHECK(readme_check::readme_holds_example_of("tests/remote_term/s3_fetcher_test.cpp"));
}

TEST_CASE("s3: an object is loaded, the next GET is a 304 on its ETag, a replaced object is seen") {
  s3_server s3;
  s3.put("prices", "eu/prices.json", R"({"eur": 1})");
  grove::node n{{.threads = 2}};
  grove::remote_term<json> term(options_for(grove::s3_fetcher(s3.options("prices", "eu/prices.json"))));
  n.block_on([&](grove::node& node) -> awaitable<void> {
    co_await term.start(node);
    const grove::term_outcome first = co_await term.first_attempt(30s);
    CHECK(first.status == grove::term_status::updated);
    CHECK(first.version.starts_with("\"")); // S3's ETag
    CHECK((*term.get())["eur"] == 1);
    const grove::term_outcome same = co_await term.refresh(30s);
    CHECK(same.status == grove::term_status::not_modified);
    s3.put("prices", "eu/prices.json", R"({"eur": 2})");
    const grove::term_outcome changed = co_await term.refresh(30s);
    CHECK(changed.status == grove::term_status::updated);
    CHECK(changed.version != first.version);
    CHECK((*term.get())["eur"] == 2);
    co_await term.stop();
  });

  // A gzip object is inflated by the term; a key with spaces and unicode is
  // encoded once, as SigV4 wants.
  s3.put("prices", "tables/t%C3%A4ble%20one.json.gz", gzip(R"({"zipped": true})"));
  const auto zipped = load_once(n, grove::s3_fetcher(s3.options("prices", "tables/t\xC3\xA4" "ble one.json.gz")));
  CHECK(zipped.first.status == grove::term_status::updated);
  REQUIRE(zipped.second);
  CHECK((*zipped.second)["zipped"] == true);
}

TEST_CASE("s3: errors name S3's code; a missing bucket fails over to the next source, a 304 never does") {
  s3_server s3;
  s3.put("prices-replica", "flags.json", R"({"from": "replica"})");
  grove::node n{{.threads = 2}};
  const auto no_bucket = load_once(n, grove::s3_fetcher(s3.options("missing-bucket", "flags.json")));
  CHECK(no_bucket.first.status == grove::term_status::failed);
  CHECK(no_bucket.first.reason.find("s3 s3://missing-bucket/flags.json at " + s3.endpoint()) != std::string::npos);
  CHECK(no_bucket.first.reason.find("status 404 Not Found (NoSuchBucket)") != std::string::npos);
  const auto no_key = load_once(n, grove::s3_fetcher(s3.options("prices", "none.json")));
  CHECK(no_key.first.reason.find("(NoSuchKey)") != std::string::npos);
  auto stranger = s3.options("prices-replica", "flags.json");
  stranger.access_key_id = "NOT-A-KEY";
  const auto denied = load_once(n, grove::s3_fetcher(stranger));
  CHECK(denied.first.reason.find("(InvalidAccessKeyId)") != std::string::npos);

  grove::remote_term<json> term(options_for(grove::fallback_fetcher(
      {grove::s3_fetcher(s3.options("missing-bucket", "flags.json")), grove::s3_fetcher(s3.options("prices-replica", "flags.json"))})));
  n.block_on([&](grove::node& node) -> awaitable<void> {
    co_await term.start(node);
    const grove::term_outcome first = co_await term.first_attempt(30s);
    CHECK(first.status == grove::term_status::updated);
    CHECK(first.version.starts_with("1:"));
    CHECK((*term.get())["from"] == "replica");
    const grove::term_outcome again = co_await term.refresh(30s);
    CHECK(again.status == grove::term_status::not_modified); // the replica's 304 ends the attempt
    co_await term.stop();
  });
}

TEST_CASE("s3: credentials and region come from the AWS_* environment when the options leave them out") {
  s3_server s3;
  s3.put("prices", "env.json", R"({"env": true})");
  grove::node n{{.threads = 2}};
  ::setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
  ::setenv("AWS_REGION", "us-east-1", 1);
  const auto from_env = load_once(n, grove::s3_fetcher({.bucket = "prices", .key = "env.json", .endpoint = s3.endpoint()}));
  CHECK(from_env.first.status == grove::term_status::updated);
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_REGION");
  CHECK_THROWS_WITH_AS((grove::s3_fetcher({.bucket = "prices", .key = "env.json", .endpoint = s3.endpoint()})),
                       doctest::Contains("s3_fetcher: access_key_id: empty and $AWS_ACCESS_KEY_ID unset"), grove::error);
}
