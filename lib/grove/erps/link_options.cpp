#include <grove/erps/detail/link.hpp>
#include <grove/erps/link_options.hpp>
#include <grove/erps/json_codec.hpp>
#include <grove/erps/payload.hpp>
#include <grove/erps/term.hpp>

namespace grove::erps {

namespace detail {

void bad_option(std::string_view owner, std::string_view field, const std::string& why) {
  throw grove::error(errc::invalid_argument, std::string(owner) + "." + std::string(field) + ": " + why);
}

link_config make_link_config(const link_options& o) {
  link_config c;
  c.max_payload = o.max_payload;
  c.writer = frame_writer{o.version, o.identifier, o.signing};
  c.identifier = o.identifier;
  c.codec = o.codec != nullptr ? o.codec : &json_codec();
  c.limits.max_depth = o.max_depth;
  c.verify_keys = o.verify_keys;
  c.require_signed = o.require_signed;
  c.keepalive_interval = o.keepalive_interval;
  c.keepalive_timeout = o.keepalive_timeout;
  c.frame_timeout = o.frame_timeout;
  c.min_frame_rate = o.min_frame_rate;
  c.max_queued_bytes = o.max_queued_bytes;
  c.log = o.log;
  return c;
}

template <class V>
void check_codec_for(const link_options& o, std::string_view owner) {
  const payload_codec& codec = o.codec != nullptr ? *o.codec : json_codec();
  if (codec_for<V>(codec) != nullptr) return;
  const std::string values = std::is_same_v<V, term>      ? "Erlang terms"
                             : std::is_same_v<V, payload> ? "JSON payloads"
                                                          : "JSON values";
  bad_option(std::string(owner) + ".link", "codec",
             "the " + std::string(codec.name()) + " codec cannot carry " + values +
                 " (its values are of another type and it has no mapping to these): expected a codec with one");
}

template void check_codec_for<json>(const link_options&, std::string_view);
template void check_codec_for<term>(const link_options&, std::string_view);
template void check_codec_for<payload>(const link_options&, std::string_view);

} // namespace detail

void link_options::validate(std::string_view owner) const {
  const std::string at = std::string(owner) + ".link";
  if (auto why = frame_writer{version, identifier, signing}.problem()) {
    detail::bad_option(at, identifier.size() > identifier_size ? "identifier" : "signing", *why);
  }
  if (require_signed && verify_keys.empty()) {
    detail::bad_option(at, "require_signed", "set, but verify_keys is empty: expected at least one key");
  }
  for (const auto& key : verify_keys) {
    if (key.key_id.empty() || key.key_id.size() > key_id_size) {
      detail::bad_option(at, "verify_keys", "key id \"" + key.key_id + "\": expected 1 to 16 bytes");
    }
  }
  if (max_payload == 0) detail::bad_option(at, "max_payload", "0: expected a positive number of bytes");
  if (max_depth == 0 || max_depth > max_depth_limit) {
    detail::bad_option(at, "max_depth",
                       std::to_string(max_depth) + ": expected a nesting depth from 1 to " +
                           std::to_string(max_depth_limit));
  }
  if (keepalive_interval <= duration::zero()) detail::bad_option(at, "keepalive_interval", "expected a positive duration");
  if (keepalive_timeout <= keepalive_interval) {
    detail::bad_option(at, "keepalive_timeout", "expected longer than keepalive_interval");
  }
  if (frame_timeout <= duration::zero()) detail::bad_option(at, "frame_timeout", "expected a positive duration");
  if (max_queued_bytes < std::size_t{max_payload} + header_size) {
    detail::bad_option(at, "max_queued_bytes",
                       std::to_string(max_queued_bytes) + ": expected at least max_payload + 96 (one whole frame)");
  }
}

} // namespace grove::erps
