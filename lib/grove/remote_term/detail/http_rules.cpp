#include <grove/remote_term/detail/http_rules.hpp>

#include <grove/core/error.hpp>
#include <grove/remote_term/fetcher.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace grove::detail {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::optional<long long> seconds_of(std::string_view text) {
  text = trim(text);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') text = text.substr(1, text.size() - 2);
  long long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// Raw (binary) HMAC-SHA256.
std::string hmac_raw(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
            data.size(), out, &size)) {
    throw grove::error(errc::invalid_argument, "SigV4: OpenSSL's HMAC failed");
  }
  return std::string(reinterpret_cast<const char*>(out), size);
}

} // namespace

std::optional<std::chrono::seconds> cache_max_age(std::string_view cache_control, std::string_view age) {
  std::optional<long long> max_age;
  while (!cache_control.empty()) {
    const std::size_t comma = cache_control.find(',');
    std::string_view directive = trim(cache_control.substr(0, comma));
    cache_control = comma == std::string_view::npos ? std::string_view() : cache_control.substr(comma + 1);
    const std::size_t eq = directive.find('=');
    if (eq == std::string_view::npos) continue;
    if (iequals(trim(directive.substr(0, eq)), "max-age")) {
      max_age = seconds_of(directive.substr(eq + 1));
      break;
    }
  }
  if (!max_age) return std::nullopt;
  const long long used = seconds_of(age).value_or(0);
  return std::chrono::seconds(std::max(0LL, *max_age - used));
}

std::string to_hex(std::string_view raw) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xF]);
  }
  return out;
}

std::string uri_encode(std::string_view text, bool keep_slash) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 0xF]);
    }
  }
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  return to_hex(hmac_raw(key, data));
}

std::string sigv4_authorization(const sigv4_request& request, const sigv4_key& key, std::string_view region,
                                std::string_view service, std::string_view amz_date) {
  // Canonical headers: lower-case names, trimmed values, sorted by name.
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& [name, value] : request.headers) headers.emplace_back(lower(name), std::string(trim(value)));
  std::sort(headers.begin(), headers.end());
  std::string canonical_headers, signed_headers;
  for (const auto& [name, value] : headers) {
    canonical_headers += name + ":" + value + "\n";
    if (!signed_headers.empty()) signed_headers += ";";
    signed_headers += name;
  }
  // Canonical query: encoded names and values, sorted.
  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [name, value] : request.query) query.emplace_back(uri_encode(name, false), uri_encode(value, false));
  std::sort(query.begin(), query.end());
  std::string canonical_query;
  for (const auto& [name, value] : query) {
    if (!canonical_query.empty()) canonical_query += "&";
    canonical_query += name + "=" + value;
  }
  const std::string canonical_request = request.method + "\n" + uri_encode(request.path, true) + "\n" +
                                        canonical_query + "\n" + canonical_headers + "\n" + signed_headers + "\n" +
                                        request.payload_sha256;
  const std::string day(amz_date.substr(0, 8));
  const std::string scope = day + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";
  const std::string string_to_sign =
      "AWS4-HMAC-SHA256\n" + std::string(amz_date) + "\n" + scope + "\n" + sha256_hex(canonical_request);
  const std::string k_date = hmac_raw("AWS4" + key.secret_key, day);
  const std::string k_region = hmac_raw(k_date, region);
  const std::string k_service = hmac_raw(k_region, service);
  const std::string k_signing = hmac_raw(k_service, "aws4_request");
  return "AWS4-HMAC-SHA256 Credential=" + key.access_key + "/" + scope + ",SignedHeaders=" + signed_headers +
         ",Signature=" + hmac_sha256(k_signing, string_to_sign);
}

} // namespace grove::detail
