// grove/erps/frame.hpp — erps frames: the 96-byte header, the 9-byte
// keepalive, an encoder and an incremental stream decoder.
//
//   grove::erps::frame_writer out{.identifier = "kv"};
//   std::string bytes = out.frame(grove::erps::frame_type::cast, R"({"op":"ping"})");
//
//   grove::erps::frame_decoder in;            // max payload 16 MiB
//   in.feed(bytes);                           // or prepare() + read + commit()
//   while (auto f = in.next()) { use(f.header, f.payload); }
//   if (in.failed()) close_with(in.error());  // the stream is out of step
//
// Layout (byte-compatible with Elixir erps; all integers big-endian):
// 0–3 "erps", 4–7 payload length, 8 type, 9–11 version, 12–47 identifier
// (NUL-padded), 48–63 HMAC key id, 64–95 HMAC-SHA256 over the header with a
// zero signature followed by the payload. A keepalive is "erps" and five
// zero bytes. No Asio here: the decoder is plain bytes in, frames out.
#pragma once

#include <grove/erps/error.hpp>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace grove::erps {

enum class frame_type : std::uint8_t {
  keepalive = 0,
  error = 1,
  reply = 2,
  push = 3,
  call = 4,
  cast = 8,
};
std::string_view to_string(frame_type t) noexcept;
/// Whether `byte` is one of the frame types above.
bool is_frame_type(std::uint8_t byte) noexcept;

inline constexpr std::size_t header_size = 96;
inline constexpr std::size_t keepalive_size = 9;
inline constexpr std::size_t identifier_size = 36;
inline constexpr std::size_t key_id_size = 16;
inline constexpr std::size_t signature_size = 32;
inline constexpr std::uint32_t default_max_payload = 16u << 20; // 16 MiB

/// A sender's protocol version (major.minor.patch, each 0–255).
struct protocol_version {
  std::uint8_t major = 0;
  std::uint8_t minor = 0;
  std::uint8_t patch = 0;
  friend auto operator<=>(const protocol_version&, const protocol_version&) = default;
  /// "1.2.3"; throws std::invalid_argument naming the expected form.
  static protocol_version parse(std::string_view text);
  std::string to_string() const;
};

/// A version requirement as Elixir's Version spells it: comparisons joined
/// by "," or "and", e.g. ">= 1.2.0, < 2.0.0", "== 0.4.0", or "~> 1.2"
/// (>= 1.2.0 and < 2.0.0; "~> 1.2.3" is >= 1.2.3 and < 1.3.0). Empty
/// allows all.
class version_requirement {
public:
  version_requirement() = default;
  /// Throws std::invalid_argument naming the expected form.
  static version_requirement parse(std::string_view text);
  bool allows(const protocol_version& v) const noexcept;
  const std::string& text() const noexcept { return text_; }

private:
  enum class op : std::uint8_t { eq, ne, lt, le, gt, ge };
  struct clause {
    op comparison;
    protocol_version version;
  };
  std::vector<clause> clauses_;
  std::string text_;
};

/// An HMAC-SHA256 key: its id travels in the header (at most 16 bytes).
struct signing_key {
  std::string key_id;
  std::string secret;
};

/// What every frame a side sends carries in its header.
struct frame_writer {
  protocol_version version{0, 4, 0};     ///< sent in bytes 9–11 (default 0.4.0, erps's)
  std::string identifier{};              ///< at most 36 bytes (default empty)
  std::optional<signing_key> signing{};  ///< sign every frame with this key (default unsigned)

  /// Throws grove::error (errc::invalid_argument: identifier or key id too long).
  void validate() const;
  /// What validate() would throw about, or nothing.
  std::optional<std::string> problem() const;
  /// A whole frame: header then payload.
  std::string frame(frame_type type, std::string_view payload) const;
  /// Fills the header of `buffer`, which holds header_size reserved bytes
  /// followed by the payload (so a payload written in place is never copied).
  void seal(frame_type type, std::string& buffer) const { seal(type, buffer, 0); }
  /// The same for the frame that starts at byte `at` of `buffer` and runs
  /// to its end (a frame appended to a queue of others).
  void seal(frame_type type, std::string& buffer, std::size_t at) const;
  /// The 9-byte keepalive.
  static std::string_view keepalive() noexcept;
};

/// A decoded header.
struct frame_header {
  frame_type type = frame_type::keepalive;
  std::uint32_t payload_length = 0;
  protocol_version version{};
  std::string_view identifier{};                   ///< without the NUL padding
  std::array<std::uint8_t, key_id_size> key_id{};  ///< zero when unsigned
  std::array<std::uint8_t, signature_size> signature{};
  bool signed_frame() const noexcept;
  std::string_view key_id_text() const noexcept;   ///< key id without the NUL padding
};

/// Checks a frame's HMAC against `keys` (by key id). An error text, or
/// std::nullopt when the signature is right.
std::optional<std::string> verify_signature(std::span<const std::uint8_t, header_size> raw_header,
                                            std::string_view payload, std::span<const signing_key> keys);

enum class decode_error : std::uint8_t {
  none,
  bad_magic,      ///< the stream does not start with "erps"
  too_large,      ///< the length is above the decoder's maximum
  unknown_type,   ///< type byte not one of frame_type
  bad_keepalive,  ///< type keepalive with a non-zero length
};
std::string_view to_string(decode_error e) noexcept;

/// An incremental decoder for one byte stream. Any split of the stream into
/// reads works, and one read may hold many frames. A length above the
/// maximum is rejected from the header alone, before anything is allocated
/// for the payload. After an error the decoder stays failed: the stream can
/// no longer be trusted to be in step.
class frame_decoder {
public:
  explicit frame_decoder(std::uint32_t max_payload = default_max_payload);

  /// A decoded frame; views into the decoder, valid until the next call
  /// of next(), prepare() or feed(). False when no whole frame is buffered.
  struct frame {
    frame_header header{};
    std::string_view payload{};
    std::span<const std::uint8_t> raw_header{}; ///< the 96 header bytes (empty for a keepalive)
    explicit operator bool() const noexcept { return ok; }
    bool keepalive() const noexcept { return header.type == frame_type::keepalive; }
    bool ok = false;
  };

  /// Writable space for the next read (at least `at_least` bytes).
  std::span<char> prepare(std::size_t at_least = 16 * 1024);
  /// `n` bytes were written into the space prepare() gave.
  void commit(std::size_t n) noexcept;
  /// prepare() + copy + commit().
  void feed(std::string_view bytes);

  /// The next whole frame, or a false frame (need more bytes, or failed()).
  frame next();

  bool failed() const noexcept { return error_ != decode_error::none; }
  decode_error error() const noexcept { return error_; }
  /// The error as one line, with the offending value (e.g. the length).
  const std::string& error_text() const noexcept { return error_text_; }
  /// Bytes received and not yet returned as frames.
  std::size_t buffered() const noexcept { return end_ - begin_; }
  /// Bytes of a frame begun but not complete (0 between frames).
  bool in_frame() const noexcept { return buffered() != 0; }
  std::uint32_t max_payload() const noexcept { return max_payload_; }
  /// Bytes still missing from the frame begun (0 when none is begun or its
  /// header is not in yet): a reader can prepare() that much at once.
  std::size_t missing() const noexcept;
  /// The buffer's capacity now (it never grows past a header plus the
  /// largest frame seen, and shrinks back after a large one).
  std::size_t capacity() const noexcept { return buffer_.size(); }
  /// When nothing is buffered, hands the buffer back to this thread's pool
  /// of read buffers (a connection waiting for its next frame then holds
  /// none); the next prepare() takes one from the pool, or allocates. No-op
  /// while bytes are buffered.
  void release() noexcept;

private:
  void fail(decode_error e, std::string text);
  void compact();

  std::vector<char> buffer_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::uint32_t max_payload_;
  decode_error error_ = decode_error::none;
  std::string error_text_;
};

} // namespace grove::erps
