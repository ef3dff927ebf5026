#include <grove/remote_term/detail/http_rules.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>

using grove::detail::cache_max_age;
using std::chrono::seconds;

namespace {
const std::string empty_payload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
}

TEST_CASE("cache_max_age_follows_cache_control_and_age") {
  // RemotePersistentTerm's table, and the cases around it.
  CHECK(cache_max_age("max-age=600") == seconds(600));                    // max-age, no Age
  CHECK(cache_max_age("max-age=600", "100") == seconds(500));             // minus Age
  CHECK(cache_max_age("public, no-transform, max-age=60") == seconds(60)); // anywhere in the list
  CHECK(cache_max_age("MAX-AGE=60, public") == seconds(60));              // case-insensitive
  CHECK(cache_max_age(" Max-Age = \"90\" ") == seconds(90));              // spaces, a quoted value
  CHECK(cache_max_age("max-age=60", "600") == seconds(0));                // Age above max-age
  CHECK(cache_max_age("no-cache, public") == std::nullopt);               // no max-age
  CHECK(cache_max_age("") == std::nullopt);                                // no header
  CHECK(cache_max_age("max-age=soon") == std::nullopt);                    // unreadable
  CHECK(cache_max_age("s-maxage=10, max-age=20") == seconds(20));         // s-maxage is not max-age
  CHECK(cache_max_age("max-age=60", "garbage") == seconds(60));           // an unreadable Age counts as 0
}

TEST_CASE("uri_encode_keeps_unreserved_bytes_and_encodes_the_rest_upper_case") {
  CHECK(grove::detail::uri_encode("a-b_c.d~e/f g", true) == "a-b_c.d~e/f%20g");
  CHECK(grove::detail::uri_encode("a/b", false) == "a%2Fb");
  CHECK(grove::detail::uri_encode("\xe1\x88\xb4", true) == "%E1%88%B4");
}

TEST_CASE("sigv4_matches_awss_published_s3_get_example") {
  // Amazon S3's "GET Object" example (Signature Version 4, a Range header).
  grove::detail::sigv4_request r;
  r.path = "/test.txt";
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Range", "bytes=0-9"},
               {"x-amz-content-sha256", empty_payload},
               {"x-amz-date", "20130524T000000Z"}};
  r.payload_sha256 = empty_payload;
  const std::string authorization = grove::detail::sigv4_authorization(
      r, {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}, "us-east-1", "s3", "20130524T000000Z");
  CHECK(authorization ==
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_CASE("sigv4_matches_awss_test_suite_with_a_query_sorted_by_value") {
  // AWS's Signature Version 4 test suite (2011): two values of one query
  // parameter, sorted "Zoo" before "aha"; signed headers date and host.
  grove::detail::sigv4_request r;
  r.query = {{"foo", "aha"}, {"foo", "Zoo"}};
  r.headers = {{"date", "Mon, 09 Sep 2011 23:36:00 GMT"}, {"host", "host.foo.com"}};
  r.payload_sha256 = empty_payload;
  const std::string authorization = grove::detail::sigv4_authorization(
      r, {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}, "us-east-1", "host", "20110909T233600Z");
  CHECK(authorization.find("SignedHeaders=date;host,") != std::string::npos);
  CHECK(authorization.find("Signature=be7148d34ebccdc6423b19085378aa0bee970bdc61d144bd1a8c48c33079ab09") !=
        std::string::npos);
}
